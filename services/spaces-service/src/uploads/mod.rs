//! The Upload API (Tuzzle's hot path): `POST /api/v1/upload` (direct),
//! `POST /api/v1/upload/generate-signed-url` and `POST /api/v1/upload/signed`,
//! `POST /api/v1/upload/unsigned/{spaceHandle}/{configName}`,
//! `POST /api/v1/upload/presign`, `PUT /api/v1/upload/objects/{fileId}` (the
//! filesystem store's presigned PUT target) and `POST /api/v1/upload/confirm/{fileId}`.
//!
//! Every upload is checked against an upload config (the one named, else the
//! space's active one): its size while it streams (413 `File too large.`),
//! its name (traversal 400, dangerous or double extensions 422 `Security
//! validation failed.`), its type by its bytes and its name (`File type not
//! allowed.`), an image's dimensions; then processed as the config asks
//! (images only) and stored under `{handle}/{file id}`. Its row and its
//! `file.uploaded` event are written in one transaction; a request that
//! fails stores nothing.

pub(crate) mod intake;
pub(crate) mod names;

use crate::access::{self, Reach};
use crate::files::{self, FileRow, FileView, ResourceType};
use crate::folders::{self, FolderRow};
use crate::openapi::{Envelope, ErrorEnvelope};
use crate::schema::files as files_table;
use crate::signed_urls;
use crate::spaces::{self, SpaceRow};
use crate::storage::StorageError;
use crate::upload_configs::{self, ConfigRow, DeliveryType, UploadSettings};
use crate::{Fail, SpacesService, SpacesState, now};
use actix_multipart::Multipart;
use actix_web::error::PayloadError;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use diesel::prelude::*;
use futures_util::StreamExt;
use identity::Identity;
use intake::{Intake, Received, Rules, Stored};
use names::too_large;
use serde::{Deserialize, Serialize};
use service_kit::cli::ServicePart;
use service_kit::ids::{self, prefix};
use service_kit::{ApiError, ApiResponse, ErrorCode, FieldError, Json};
use std::collections::BTreeMap;
use store::{DbConnection, StoreError};
use utoipa::ToSchema;

/// The longest text field of a multipart upload.
const MAX_FIELD_BYTES: usize = 4096;
/// Where signed upload URLs point; what their signature covers.
pub(crate) const SIGNED_PATH: &str = "/api/v1/upload/signed";
/// Where files sent before their form's `space` are held until it is read.
pub(crate) const INCOMING: &str = "_incoming";
/// Where the filesystem store's presigned PUTs go: `{OBJECTS_PATH}/{file id}`.
pub(crate) const OBJECTS_PATH: &str = "/api/v1/upload/objects";

/// Where an upload goes and what it must be.
pub(crate) struct Target {
    pub space: SpaceRow,
    pub config: ConfigRow,
    pub settings: UploadSettings,
    pub access_type: DeliveryType,
    pub rules: Rules,
}

impl Target {
    fn new(space: SpaceRow, config: ConfigRow) -> Target {
        let fields = config.fields();
        Target {
            rules: Rules::of(&fields.config),
            access_type: fields.delivery_type,
            settings: fields.config,
            space,
            config,
        }
    }

    /// Where a file's bytes go.
    fn object_key(&self, file_id: &str) -> String {
        object_key(&self.space.handle, file_id)
    }

    /// The space's `webhook_url` and the config's `notifications.webhook_url`,
    /// each once.
    fn webhook_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = Vec::new();
        for url in [
            self.space.webhook_url.as_ref(),
            self.settings.notifications.webhook_url.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !urls.contains(url) {
                urls.push(url.clone());
            }
        }
        urls
    }
}

pub(crate) fn object_key(handle: &str, file_id: &str) -> String {
    format!("{handle}/{file_id}")
}

/// An upload into a disabled space is refused.
fn usable(space: SpaceRow) -> Result<SpaceRow, Fail> {
    if space.enabled {
        Ok(space)
    } else {
        Err(Fail::Api(ApiError::forbidden("the space is disabled")))
    }
}

/// The space `handle` within `reach` and its config `config` (id or name;
/// default: the space's active config).
fn resolve_target(
    conn: &mut DbConnection,
    reach: Option<&Reach>,
    handle: &str,
    config: Option<&str>,
) -> Result<Target, Fail> {
    let space = usable(spaces::find_by_handle(conn, reach, handle.trim())?)?;
    let invalid = || {
        Fail::Api(ApiError::validation(vec![FieldError::new(
            "upload_config",
            "The selected upload config is invalid.",
        )]))
    };
    let config = match config.map(str::trim).filter(|c| !c.is_empty()) {
        Some(named) => upload_configs::of_space(conn, &space.id, named)?.ok_or_else(invalid)?,
        None => {
            let active = space.active_upload_config_id.clone().ok_or_else(invalid)?;
            upload_configs::of_space(conn, &space.id, &active)?.ok_or_else(invalid)?
        }
    };
    Ok(Target::new(space, config))
}

/// The folder `path` (`a/b/`) of `space`: created with the folders above it
/// in a `dynamic` space; in a `fixed` one it must exist (422 on `field`).
pub(crate) fn folder_for_path(
    conn: &mut DbConnection,
    space: &SpaceRow,
    path: &str,
    field: &str,
) -> Result<FolderRow, Fail> {
    if let Some(folder) = folders::find_by_path(conn, &space.id, path)? {
        return Ok(folder);
    }
    if space.folder_mode == "dynamic" {
        Ok(folders::ensure_path(conn, space, path)?)
    } else {
        Err(Fail::Api(ApiError::validation(vec![FieldError::new(
            field,
            format!("The selected {} is invalid.", field.replace('_', " ")),
        )])))
    }
}

/// Which folder a direct upload names.
#[derive(Debug, Clone, Default)]
struct FolderChoice {
    id: Option<String>,
    /// Normalised (`a/b/`).
    path: Option<String>,
}

impl FolderChoice {
    fn of_fields(fields: &BTreeMap<String, String>) -> Result<FolderChoice, ApiError> {
        let path = match fields.get("folder_path").map(|p| p.trim()) {
            Some(p) if !p.is_empty() && p != "/" => Some(names::folder_path(p, "folder_path")?),
            _ => None,
        };
        Ok(FolderChoice {
            id: fields.get("folder_id").filter(|f| !f.is_empty()).cloned(),
            path,
        })
    }

    /// The folder, inside the caller's transaction; `None`: the root.
    fn resolve(&self, conn: &mut DbConnection, target: &Target) -> Result<Option<FolderRow>, Fail> {
        let space = &target.space;
        let reach = Reach::Space {
            workspace_id: space.workspace_id.clone(),
            space_id: space.id.clone(),
        };
        match (&self.id, &self.path) {
            (Some(id), path) => {
                let folder = folders::find_in(conn, &reach, space, id, "folder_id")?;
                if path.as_ref().is_some_and(|p| *p != folder.path) {
                    return Err(Fail::Api(ApiError::validation(vec![FieldError::new(
                        "folder_path",
                        "must be the path of folder_id",
                    )])));
                }
                Ok(Some(folder))
            }
            (None, Some(path)) => Ok(Some(folder_for_path(conn, space, path, "folder_path")?)),
            (None, None) => match &target.settings.storage.folder {
                Some(folder) => Ok(Some(folder_for_path(
                    conn,
                    space,
                    &format!("{folder}/"),
                    "folder_path",
                )?)),
                None => Ok(None),
            },
        }
    }
}

/// What the first part of a generated name says of the file.
fn name_prefix(resource_type: ResourceType) -> &'static str {
    match resource_type {
        ResourceType::Image => "image",
        ResourceType::Video => "video",
        ResourceType::Audio => "audio",
        ResourceType::Document | ResourceType::Text => "doc",
        ResourceType::Archive | ResourceType::Other => "file",
    }
}

/// The file's name within its space: generated (`image-01HQ…`), or the one
/// it was uploaded with, made unique (`photo-2.jpg`) when the config says
/// so and refused (409) otherwise.
fn choose_name(
    conn: &mut DbConnection,
    target: &Target,
    file_id: &str,
    resource_type: ResourceType,
    original: &str,
) -> Result<String, Fail> {
    let storage = &target.settings.storage;
    let handle = &target.space.handle;
    if storage.generate_filename {
        let ulid = file_id.strip_prefix("fil_").unwrap_or(file_id);
        return Ok(format!("{}-{ulid}", name_prefix(resource_type)));
    }
    let free = |conn: &mut DbConnection, name: &str| {
        files::path_taken(conn, &format!("{handle}/{name}"), None).map(|taken| !taken)
    };
    if free(conn, original)? {
        return Ok(original.to_owned());
    }
    if !storage.unique_filename {
        return Err(Fail::Api(ApiError::conflict(format!(
            "a file named {original} is already in the space"
        ))));
    }
    let (stem, extension) = match original.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (original, String::new()),
    };
    for n in 2..=50 {
        let candidate = format!("{stem}-{n}{extension}");
        if candidate.len() <= media::MAX_NAME_BYTES && free(conn, &candidate)? {
            return Ok(candidate);
        }
    }
    let ulid = file_id.strip_prefix("fil_").unwrap_or(file_id);
    Ok(format!("{stem}-{ulid}{extension}"))
}

/// Records `file.uploaded` for `row`, inside its transaction.
fn record_uploaded(
    conn: &mut DbConnection,
    row: &FileRow,
    target: &Target,
    request_id: Option<String>,
) -> Result<(), StoreError> {
    let mut data = serde_json::json!({
        "file": {
            "id": row.id,
            "name": row.name,
            "original_name": row.original_name,
            "mime_type": row.mime_type,
            "size": row.size,
            "storage_path": row.storage_path,
            "type": row.access_type,
            "resource_type": row.resource_type,
            "space_id": row.space_id,
        },
    });
    let webhooks = target.webhook_urls();
    if !webhooks.is_empty() {
        data["webhook_urls"] = webhooks.into();
    }
    let event = events::Event::new(
        SpacesService::NAME,
        "file.uploaded",
        &row.id,
        data,
        request_id,
    )
    .with_workspace(&row.workspace_id);
    events::outbox::record(conn, &event)
}

/// Writes the rows of stored files (and the folders a dynamic space gets),
/// with their events, in one transaction; returns their views.
async fn commit(
    state: &SpacesState,
    target: Target,
    folder: FolderChoice,
    stored: Vec<Stored>,
    reference: Option<String>,
) -> Result<Vec<FileView>, ApiError> {
    let request_id = service_kit::request_id::current();
    let delivery = state.delivery.clone();
    let keys: Vec<String> = stored.iter().map(|s| s.object_key.clone()).collect();
    let committed = state
        .db
        .transaction(move |conn| {
            let folder = folder.resolve(conn, &target)?;
            if let Some(reference) = &reference
                && files::reference_taken(conn, &target.space.id, reference, None)?
            {
                return Err(Fail::Api(ApiError::validation(vec![FieldError::new(
                    "ref",
                    "has already been taken.",
                )])));
            }
            let mut views = Vec::with_capacity(stored.len());
            for file in stored {
                let name = choose_name(
                    conn,
                    &target,
                    &file.id,
                    file.kind.resource_type,
                    &file.original_name,
                )?;
                let at = now();
                let row = FileRow {
                    workspace_id: target.space.workspace_id.clone(),
                    space_id: target.space.id.clone(),
                    folder_id: folder.as_ref().map(|f| f.id.clone()),
                    upload_config_id: Some(target.config.id().to_owned()),
                    status: "active".into(),
                    storage_path: format!("{}/{name}", target.space.handle),
                    name,
                    original_name: file.original_name,
                    mime_type: file.kind.mime,
                    extension: file.kind.extension,
                    size: file.size as i64,
                    object_key: file.object_key,
                    sha256: Some(file.sha256),
                    reference: reference.clone(),
                    access_type: target.access_type.as_str().into(),
                    resource_type: file.kind.resource_type.as_str().into(),
                    width: file.width.map(|w| w as i32),
                    height: file.height.map(|h| h as i32),
                    blur_hash: file.blur_hash,
                    access_control: None,
                    expires_at: None,
                    created_at: at,
                    updated_at: at,
                    id: file.id,
                };
                diesel::insert_into(files_table::table)
                    .values(&row)
                    .execute(conn)?;
                record_uploaded(conn, &row, &target, request_id.clone())?;
                views.push(files::view(conn, &delivery, &target.space, row)?);
            }
            Ok::<_, Fail>(views)
        })
        .await;
    match committed {
        Ok(views) => {
            state.events.nudge();
            Ok(views)
        }
        Err(fail) => {
            discard(state, keys).await;
            Err(files::file_fail(fail))
        }
    }
}

/// Removes objects of an upload that failed.
async fn discard(state: &SpacesState, keys: Vec<String>) {
    for key in keys {
        if let Err(e) = state.storage.delete(&key).await {
            tracing::warn!(error = %e, key, "could not remove an object of a failed upload");
        }
    }
}

/// Removes what files received so far stored.
async fn discard_received(state: &SpacesState, received: Vec<(String, Received)>) {
    let keys = received
        .into_iter()
        .filter_map(|(_, r)| match r.body {
            intake::Body::Stored { key, .. } => Some(key),
            intake::Body::Memory(_) => None,
        })
        .collect();
    discard(state, keys).await;
}

/// The fields and files of a multipart upload.
#[derive(Default)]
struct Form {
    fields: BTreeMap<String, String>,
    /// `(field name, file)`, in the order sent.
    files: Vec<(String, Received)>,
    /// The target, once resolved from the fields (direct uploads).
    target: Option<Target>,
    /// The `upload_config` field the target was resolved with.
    resolved_with: Option<Option<String>>,
    /// Files arrived before `space`: streamed to `_incoming/` and checked
    /// once the whole form is read.
    staged: bool,
}

/// How the target of an upload is known.
enum Plan<'a> {
    /// Before the body (signed and unsigned uploads).
    Known(&'a Target),
    /// From the body's `space` and `upload_config` (direct uploads).
    Fields(&'a Reach),
}

fn multipart_error(e: actix_multipart::MultipartError) -> ApiError {
    match e {
        actix_multipart::MultipartError::Payload(PayloadError::Overflow) => too_large(),
        actix_multipart::MultipartError::ContentTypeMissing
        | actix_multipart::MultipartError::ContentTypeParse
        | actix_multipart::MultipartError::ContentTypeIncompatible
        | actix_multipart::MultipartError::BoundaryMissing => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: multipart/form-data",
        ),
        other => ApiError::bad_request(format!("malformed multipart body: {other}")),
    }
}

/// The request body, refused (413) past `cap` bytes whatever it declares.
fn capped<S>(
    req: &HttpRequest,
    payload: S,
    cap: u64,
) -> Result<impl futures_util::Stream<Item = Result<Bytes, PayloadError>> + 'static, ApiError>
where
    S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + 'static,
{
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut seen = 0u64;
    Ok(payload.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > cap {
            Err(PayloadError::Overflow)
        } else {
            Ok(chunk)
        }
    }))
}

/// Reads a multipart upload into `form`: text fields, and file fields
/// (`file`, `files[]`) received as they stream.
async fn read_form(
    state: &SpacesState,
    req: &HttpRequest,
    payload: web::Payload,
    plan: Plan<'_>,
    expected_mime: Option<&str>,
    form: &mut Form,
) -> Result<(), ApiError> {
    let uploads = &state.settings.uploads;
    let body = capped(req, payload, uploads.max_request_bytes)?;
    let mut multipart = Multipart::new(req.headers(), body);
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(multipart_error)?;
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_owned);
        // A form's empty file input sends a part with an empty file name:
        // no file.
        let filename = filename.filter(|f| !f.trim().is_empty());
        let Some(filename) = filename else {
            let mut value = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(multipart_error)?;
                if value.len() + chunk.len() > MAX_FIELD_BYTES {
                    return Err(ApiError::validation(vec![FieldError::new(
                        name,
                        format!("must not be greater than {MAX_FIELD_BYTES} characters"),
                    )]));
                }
                value.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(value).map_err(|_| {
                ApiError::validation(vec![FieldError::new(name.clone(), "must be a string")])
            })?;
            form.fields.insert(name, value);
            continue;
        };
        if !matches!(name.as_str(), "file" | "files" | "files[]") {
            // An unknown file field is ignored, as unknown fields are.
            while let Some(chunk) = field.next().await {
                chunk.map_err(multipart_error)?;
            }
            continue;
        }
        if let Plan::Fields(reach) = &plan
            && form.files.is_empty()
        {
            match form.fields.get("space").cloned() {
                Some(handle) => {
                    let config = form.fields.get("upload_config").cloned();
                    let reach = (*reach).clone();
                    let used = config.clone();
                    let target = state
                        .db
                        .run(move |conn| {
                            resolve_target(conn, Some(&reach), &handle, config.as_deref())
                        })
                        .await
                        .map_err(ApiError::from)?;
                    form.target = Some(target);
                    form.resolved_with = Some(used);
                }
                None => form.staged = true,
            }
        }
        let target = match &plan {
            Plan::Known(target) => Some(*target),
            Plan::Fields(_) => form.target.as_ref().filter(|_| !form.staged),
        };
        let id = ids::new_id(prefix::FILE);
        let key = match target {
            Some(target) => target.object_key(&id),
            None => format!("{INCOMING}/{id}"),
        };
        let received = intake::receive(
            field.map(|chunk| chunk.map_err(multipart_error)),
            &filename,
            id,
            Intake {
                storage: &state.storage,
                rules: target.map(|t| &t.rules),
                key,
                cap: uploads.max_request_bytes,
                image_memory: uploads.image_memory_bytes,
                part_size: state.settings.part_size,
                expected_mime,
            },
        )
        .await?;
        form.files.push((name, received));
    }
    Ok(())
}

/// One file, or several (`files[]`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Uploaded {
    One(Box<FileView>),
    Many(Vec<FileView>),
}

/// Checks and stores the files of `form` for `target`, then writes their rows.
async fn store_form(
    state: &SpacesState,
    target: Target,
    mut form: Form,
    folder: FolderChoice,
    original_name: Option<&str>,
) -> Result<Uploaded, ApiError> {
    let several = form.files.len() > 1 || form.files.iter().any(|(name, _)| name != "file");
    let reference = match form.fields.get("ref") {
        Some(raw) if !raw.trim().is_empty() => {
            let mut errors = Vec::new();
            let reference = files::check_reference(raw, "ref", &mut errors);
            if !errors.is_empty() {
                discard_received(state, std::mem::take(&mut form.files)).await;
                return Err(ApiError::validation(errors));
            }
            if several {
                discard_received(state, std::mem::take(&mut form.files)).await;
                return Err(ApiError::validation(vec![FieldError::new(
                    "ref",
                    "is for uploads of one file",
                )]));
            }
            Some(reference)
        }
        _ => None,
    };
    let mut stored: Vec<Stored> = Vec::with_capacity(form.files.len());
    let mut pending = std::mem::take(&mut form.files).into_iter();
    while let Some((_, mut received)) = pending.next() {
        if let Some(name) = original_name {
            received.original_name = name.to_owned();
        }
        let key = target.object_key(&received.id);
        match intake::finalize(
            &state.storage,
            &state.image_work,
            received,
            &target.rules,
            &key,
        )
        .await
        {
            Ok(file) => stored.push(file),
            Err(e) => {
                discard(state, stored.into_iter().map(|s| s.object_key).collect()).await;
                discard_received(state, pending.collect()).await;
                return Err(e);
            }
        }
    }
    let mut views = commit(state, target, folder, stored, reference).await?;
    Ok(if several {
        Uploaded::Many(views)
    } else {
        Uploaded::One(Box::new(views.remove(0)))
    })
}

/// No file in the form.
fn file_required() -> ApiError {
    ApiError::validation(vec![FieldError::new("file", "field is required")])
}

/// Upload files
///
/// Multipart: `file` (or several `files[]`), `space` (the space's handle),
/// `upload_config` (id or name; default: the space's active config),
/// `folder_id` or `folder_path` (created in a `dynamic` space), `ref`. Send
/// the fields before the files: the config's limits then apply as they
/// stream (files sent first are held aside, within `uploads.max_request_bytes`,
/// and checked once the fields are known). One file answers its record,
/// `files[]` a list. Needs `spaces:write`.
#[utoipa::path(
    post,
    path = "/api/v1/upload",
    operation_id = "upload",
    tag = "upload",
    request_body(content_type = "multipart/form-data", content = DirectUploadForm),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 201, description = "The file (or, for `files[]`, the files) as stored.", body = Envelope<Uploaded>),
        (status = 400, description = "A name or `folder_path` that climbs out of its folder, or a malformed body.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, no workspace selected, or a disabled space.", body = ErrorEnvelope),
        (status = 404, description = "`space` names no space within reach.", body = ErrorEnvelope),
        (status = 409, description = "A name already in the space, with a config that keeps names and does not make them unique.", body = ErrorEnvelope),
        (status = 413, description = "`File too large.`: over the config's `max_file_size` (or the request limit).", body = ErrorEnvelope),
        (status = 415, description = "Not multipart/form-data.", body = ErrorEnvelope),
        (status = 422, description = "No file or space, `File type not allowed.`, `Security validation failed.`, bad image dimensions, or a bad field.", body = ErrorEnvelope),
    )
)]
pub async fn direct(
    identity: Identity,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Uploaded>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let mut form = Form::default();
    if let Err(e) = read_form(&state, &req, payload, Plan::Fields(&reach), None, &mut form).await {
        discard_received(&state, form.files).await;
        return Err(e);
    }
    let outcome = async {
        if form.files.is_empty() {
            return Err(file_required());
        }
        let folder = FolderChoice::of_fields(&form.fields)?;
        let target = match form.target.take() {
            Some(target) => {
                // Fields after the files cannot change where they went.
                let config = form.fields.get("upload_config").cloned();
                if form.resolved_with.as_ref() != Some(&config)
                    || form.fields.get("space") != Some(&target.space.handle)
                {
                    return Err(ApiError::validation(vec![FieldError::new(
                        "upload_config",
                        "must be sent before the files, with space",
                    )]));
                }
                target
            }
            None => {
                let Some(handle) = form.fields.get("space").cloned() else {
                    return Err(ApiError::validation(vec![FieldError::new(
                        "space",
                        "field is required",
                    )]));
                };
                let config = form.fields.get("upload_config").cloned();
                let reach = reach.clone();
                state
                    .db
                    .run(move |conn| resolve_target(conn, Some(&reach), &handle, config.as_deref()))
                    .await
                    .map_err(ApiError::from)?
            }
        };
        Ok((target, folder))
    }
    .await;
    match outcome {
        Ok((target, folder)) => {
            let uploaded = store_form(&state, target, form, folder, None).await?;
            Ok(ApiResponse::created(uploaded))
        }
        Err(e) => {
            discard_received(&state, form.files).await;
            Err(e)
        }
    }
}

/// The multipart fields of a direct upload.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // described, never built: the handler streams the form
pub struct DirectUploadForm {
    /// The file (or `files[]`, several).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Several files, each checked and stored on its own.
    #[serde(rename = "files[]")]
    #[schema(value_type = Option<Vec<String>>, format = Binary)]
    files: Option<Vec<Vec<u8>>>,
    /// Required: the space's handle.
    space: String,
    /// An upload config of the space (id or name); default: its active one.
    upload_config: Option<String>,
    /// A folder of the space (`fld_…`).
    folder_id: Option<String>,
    /// A folder path (`photos/vacation/`), created in a `dynamic` space.
    folder_path: Option<String>,
    /// The client's reference for the file (one file only), unique in the space.
    #[serde(rename = "ref")]
    reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignedUrlRequest {
    /// Required: the upload config (`upc_…`) uploads are checked against; it
    /// must be signed (`is_signed`).
    #[schema(value_type = String, required = true)]
    upload_config_id: Option<String>,
    /// Minutes the URL is valid: 1 to `uploads.signed_url_max_minutes` (7
    /// days); default `uploads.signed_url_default_minutes` (60).
    #[schema(minimum = 1)]
    expiration_minutes: Option<u32>,
    /// The name the uploaded file is stored with (its `original_name`).
    filename: Option<String>,
    /// The MIME type the upload must have (told from its bytes).
    content_type: Option<String>,
}

/// A signed upload URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedUploadUrl {
    /// `POST` a multipart `file` here, without a credential.
    url: String,
    /// `upc_…`
    upload_config_id: String,
    /// `spc_…`
    space_id: String,
    /// Unix seconds.
    expires: i64,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// Generate a signed upload URL
///
/// A URL that accepts an upload (`POST`, multipart `file`) without a
/// credential until it expires, checked against the upload config, which
/// must be signed (`is_signed`). Needs `spaces:write`.
#[utoipa::path(
    post,
    path = "/api/v1/upload/generate-signed-url",
    operation_id = "generate_signed_upload_url",
    tag = "upload",
    request_body = SignedUrlRequest,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The signed URL.", body = Envelope<SignedUploadUrl>),
        (status = 400, description = "A `filename` that climbs out of its folder.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, no workspace selected, or a disabled space.", body = ErrorEnvelope),
        (status = 404, description = "`upload_config_id` names no config within reach.", body = ErrorEnvelope),
        (status = 422, description = "A bad field, or a config that is not signed.", body = ErrorEnvelope),
    )
)]
pub async fn generate_signed_url(
    identity: Identity,
    body: Json<SignedUrlRequest>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<SignedUploadUrl>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let request = body.into_inner();
    let uploads = &state.settings.uploads;
    let mut errors = Vec::new();
    let config_id = request.upload_config_id.filter(|c| !c.is_empty());
    if config_id.is_none() {
        errors.push(FieldError::new("upload_config_id", "field is required"));
    }
    let minutes = request
        .expiration_minutes
        .unwrap_or(uploads.signed_url_default_minutes);
    if !(1..=uploads.signed_url_max_minutes).contains(&minutes) {
        errors.push(FieldError::new(
            "expiration_minutes",
            format!("must be between 1 and {}", uploads.signed_url_max_minutes),
        ));
    }
    let filename = match request.filename.filter(|f| !f.trim().is_empty()) {
        Some(raw) => Some(names::file_name(&raw)?),
        None => None,
    };
    let content_type = request.content_type.map(|c| c.trim().to_ascii_lowercase());
    if content_type.as_deref().is_some_and(|c| !names::is_mime(c)) {
        errors.push(FieldError::new(
            "content_type",
            "must be a MIME type such as image/jpeg",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let config_id = config_id.unwrap_or_default();
    let config = state
        .db
        .run(move |conn| {
            let config = upload_configs::find_within(conn, &reach, &config_id)?;
            let space = spaces::find(conn, &reach, config.space_id())?;
            usable(space)?;
            Ok::<_, Fail>(config)
        })
        .await
        .map_err(ApiError::from)?;
    if !config.fields().is_signed {
        return Err(ApiError::validation(vec![FieldError::new(
            "upload_config_id",
            "must be a signed upload config (is_signed)",
        )]));
    }
    let expires = chrono::Utc::now().timestamp() + i64::from(minutes) * 60;
    let mut params = vec![
        ("upload_config_id".to_owned(), config.id().to_owned()),
        ("space_id".to_owned(), config.space_id().to_owned()),
    ];
    if let Some(filename) = filename {
        params.push(("filename".into(), filename));
    }
    if let Some(content_type) = content_type {
        params.push(("content_type".into(), content_type));
    }
    let query = signed_urls::sign(&state.secrets.upload_urls, SIGNED_PATH, &params, expires);
    Ok(ApiResponse::ok(SignedUploadUrl {
        url: format!("{}{SIGNED_PATH}?{query}", uploads.public_url),
        upload_config_id: config.id().to_owned(),
        space_id: config.space_id().to_owned(),
        expires,
        expires_at: crate::unix_rfc3339(expires).unwrap_or_default(),
    }))
}

/// The refusal of a signed URL that does not hold.
fn refused(refusal: signed_urls::Refusal) -> ApiError {
    ApiError::forbidden(refusal.to_string())
}

/// Upload with a signed URL
///
/// Multipart `file` (optionally `upload_config_id` and `space_id`, which
/// must be the URL's), to the URL made by `generate-signed-url`: no
/// credential, the signature authorises. The config's checks apply; files
/// go to its `storage.folder`. 403 when the URL is expired or altered.
#[utoipa::path(
    post,
    path = "/api/v1/upload/signed",
    operation_id = "upload_signed",
    tag = "upload",
    params(
        ("upload_config_id" = String, Query, description = "Signed: the config."),
        ("space_id" = String, Query, description = "Signed: the space."),
        ("expires" = i64, Query, description = "Signed: Unix seconds."),
        ("signature" = String, Query, description = "HMAC-SHA256, hex."),
    ),
    request_body(content_type = "multipart/form-data", content = SignedUploadForm),
    security(()),
    responses(
        (status = 201, description = "The file as stored.", body = Envelope<Uploaded>),
        (status = 400, description = "A name that climbs out of its folder, or a malformed body.", body = ErrorEnvelope),
        (status = 403, description = "An expired or altered URL, a config no longer signed, or a disabled space.", body = ErrorEnvelope),
        (status = 404, description = "The URL's config or space is gone.", body = ErrorEnvelope),
        (status = 413, description = "`File too large.`", body = ErrorEnvelope),
        (status = 415, description = "Not multipart/form-data.", body = ErrorEnvelope),
        (status = 422, description = "No file, `File type not allowed.`, `Security validation failed.`, bad image dimensions, or fields that are not the URL's.", body = ErrorEnvelope),
    )
)]
pub async fn signed(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Uploaded>, ApiError> {
    let params = signed_urls::verify(
        &state.secrets.upload_urls,
        SIGNED_PATH,
        req.query_string(),
        chrono::Utc::now().timestamp(),
    )
    .map_err(refused)?;
    let param = |name: &str| signed_urls::param(&params, name).map(str::to_owned);
    let (config_id, space_id) = (
        param("upload_config_id").unwrap_or_default(),
        param("space_id").unwrap_or_default(),
    );
    let (filename, content_type) = (param("filename"), param("content_type"));
    let target = {
        let (config_id, space_id) = (config_id.clone(), space_id.clone());
        state
            .db
            .run(move |conn| {
                let missing = || Fail::Api(ApiError::not_found("upload config"));
                let config = upload_configs::by_id(conn, &config_id)?
                    .filter(|c| c.space_id() == space_id)
                    .ok_or_else(missing)?;
                let space = spaces::find(conn, &Reach::All, &space_id)?;
                Ok::<_, Fail>(Target::new(usable(space)?, config))
            })
            .await
            .map_err(ApiError::from)?
    };
    if !target.config.fields().is_signed {
        return Err(ApiError::forbidden(
            "the upload config no longer takes signed uploads",
        ));
    }
    let mut form = Form::default();
    let read = read_form(
        &state,
        &req,
        payload,
        Plan::Known(&target),
        content_type.as_deref(),
        &mut form,
    )
    .await;
    let checked = read.and_then(|()| {
        if form.files.is_empty() {
            return Err(file_required());
        }
        for (field, signed) in [("upload_config_id", &config_id), ("space_id", &space_id)] {
            if form.fields.get(field).is_some_and(|v| v != signed) {
                return Err(ApiError::validation(vec![FieldError::new(
                    field,
                    "must be the signed URL's",
                )]));
            }
        }
        Ok(())
    });
    if let Err(e) = checked {
        discard_received(&state, form.files).await;
        return Err(e);
    }
    let uploaded = store_form(
        &state,
        target,
        form,
        FolderChoice::default(),
        filename.as_deref(),
    )
    .await?;
    Ok(ApiResponse::created(uploaded))
}

/// The multipart fields of a signed or unsigned upload.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // described, never built: the handler streams the form
pub struct SignedUploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// When sent, the signed URL's.
    upload_config_id: Option<String>,
    /// When sent, the signed URL's.
    space_id: Option<String>,
}

/// Whether `referer` (a URL) names a host `patterns` allow
/// (`example.com`, `*.example.com`, with an optional port).
fn referrer_allowed(referer: Option<&str>, patterns: &[String]) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let Some(url) = referer.and_then(|r| url::Url::parse(r).ok()) else {
        return false;
    };
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let port = url.port();
    patterns.iter().any(|pattern| {
        let (host_pattern, port_pattern) = match pattern.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok()),
            None => (pattern.as_str(), None),
        };
        let host_matches = match host_pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == host_pattern,
        };
        host_matches
            && port_pattern
                .is_none_or(|p| url.port_or_known_default() == Some(p) || port == Some(p))
    })
}

/// The scheme the client used: the gateway's `x-forwarded-proto`, else this
/// connection's.
fn client_scheme(req: &HttpRequest) -> String {
    req.headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| req.connection_info().scheme().to_owned())
}

/// Upload without a credential
///
/// Multipart `file`, to a space (its handle) and an upload config (its name)
/// that allows unsigned uploads (`allow_unsigned`), within its
/// `unsigned_restrictions`: the `Referer` must name an allowed domain, the
/// request must be https when `require_https`, and at most
/// `max_uploads_per_hour` such uploads are taken per config (429 beyond,
/// with `Retry-After`). The config's checks apply; files go to its
/// `storage.folder`.
#[utoipa::path(
    post,
    path = "/api/v1/upload/unsigned/{spaceHandle}/{configName}",
    operation_id = "upload_unsigned",
    tag = "upload",
    params(
        ("spaceHandle" = String, Path, description = "The space's handle."),
        ("configName" = String, Path, description = "The upload config's name."),
    ),
    request_body(content_type = "multipart/form-data", content = SignedUploadForm),
    security(()),
    responses(
        (status = 201, description = "The file as stored.", body = Envelope<Uploaded>),
        (status = 400, description = "A name that climbs out of its folder, or a malformed body.", body = ErrorEnvelope),
        (status = 403, description = "A config without `allow_unsigned`, a referrer not allowed, plain http where https is required, or a disabled space.", body = ErrorEnvelope),
        (status = 404, description = "No such space, or no such config in it.", body = ErrorEnvelope),
        (status = 413, description = "`File too large.`", body = ErrorEnvelope),
        (status = 415, description = "Not multipart/form-data.", body = ErrorEnvelope),
        (status = 422, description = "No file, `File type not allowed.`, `Security validation failed.`, or bad image dimensions.", body = ErrorEnvelope),
        (status = 429, description = "`max_uploads_per_hour` reached; `Retry-After` says when to try again.", body = ErrorEnvelope),
    )
)]
pub async fn unsigned(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Uploaded>, ApiError> {
    let (handle, config_name) = path.into_inner();
    let target = state
        .db
        .run(move |conn| {
            let space = usable(spaces::find_by_handle(conn, None, &handle)?)?;
            let config = upload_configs::of_space(conn, &space.id, &config_name)?
                .ok_or_else(|| Fail::Api(ApiError::not_found("upload config")))?;
            Ok::<_, Fail>(Target::new(space, config))
        })
        .await
        .map_err(ApiError::from)?;
    let fields = target.config.fields();
    let restrictions = match (&fields.allow_unsigned, &fields.unsigned_restrictions) {
        (true, Some(r)) => r.clone(),
        _ => {
            return Err(ApiError::forbidden(
                "the upload config does not allow unsigned uploads",
            ));
        }
    };
    let referer = req.headers().get("referer").and_then(|v| v.to_str().ok());
    if !referrer_allowed(referer, &restrictions.allowed_referrers) {
        return Err(ApiError::forbidden("the referrer is not allowed"));
    }
    if restrictions.require_https && client_scheme(&req) != "https" {
        return Err(ApiError::forbidden("unsigned uploads must use https"));
    }
    if let Some(per_hour) = restrictions.max_uploads_per_hour {
        let decision = state
            .cache
            .rate_limit(
                &format!("unsigned-uploads:{}", target.config.id()),
                cache::Quota::new(per_hour, std::time::Duration::from_secs(3600)),
            )
            .await
            .map_err(|e| {
                ApiError::service_unavailable("cache unavailable")
                    .with_retry_after(1)
                    .with_source(e)
            })?;
        if !decision.allowed {
            let seconds = decision.retry_after.map_or(60, |d| d.as_secs().max(1));
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "Too many unsigned uploads for this config. Try again later.",
            )
            .with_retry_after(seconds));
        }
    }
    let mut form = Form::default();
    let read = read_form(&state, &req, payload, Plan::Known(&target), None, &mut form).await;
    if let Err(e) = read.and_then(|()| {
        if form.files.is_empty() {
            Err(file_required())
        } else {
            Ok(())
        }
    }) {
        discard_received(&state, form.files).await;
        return Err(e);
    }
    let uploaded = store_form(&state, target, form, FolderChoice::default(), None).await?;
    Ok(ApiResponse::created(uploaded))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PresignRequest {
    /// Required: the space's handle.
    #[schema(value_type = String, required = true)]
    space: Option<String>,
    /// Required: the file's name (at most 255 bytes; its extension must be
    /// one the config accepts).
    #[schema(value_type = String, required = true)]
    filename: Option<String>,
    /// Required: its MIME type (at most 100 characters); checked against
    /// its bytes on confirmation.
    #[schema(value_type = String, required = true)]
    content_type: Option<String>,
    /// Required: its size in bytes, at most the config's `max_file_size`;
    /// the stored object must have exactly this size.
    #[schema(value_type = u64, required = true, minimum = 1)]
    size: Option<u64>,
    /// An upload config of the space (id or name); default: its active one.
    upload_config: Option<String>,
    /// The client's reference, unique within the space (at most 255 characters).
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// Where to PUT a file (Tuzzle answers it without `data`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Presigned {
    /// The pending file (`fil_…`).
    file_id: String,
    /// `PUT` the bytes here, before `expires_in` seconds have passed: the
    /// store's own presigned URL (S3), or spaces-service's (filesystem).
    upload_url: String,
    /// Where the bytes go in the store.
    object_key: String,
    /// Seconds.
    expires_in: u64,
}

/// Presign an upload
///
/// Announces a file and answers a URL to `PUT` its bytes to directly (the
/// store's presigned URL on S3; on the filesystem store, spaces-service's own
/// signed URL). The file stays `pending` until `POST /upload/confirm/{fileId}`
/// checks the stored object. The answer is bare (no `data`). Needs
/// `spaces:write`.
#[utoipa::path(
    post,
    path = "/api/v1/upload/presign",
    operation_id = "presign_upload",
    tag = "upload",
    request_body = PresignRequest,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 201, description = "Where to PUT the bytes.", body = Presigned),
        (status = 400, description = "A `filename` that climbs out of its folder.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, no workspace selected, or a disabled space.", body = ErrorEnvelope),
        (status = 404, description = "`space` names no space within reach.", body = ErrorEnvelope),
        (status = 409, description = "A name already in the space, with a config that keeps names and does not make them unique.", body = ErrorEnvelope),
        (status = 413, description = "`File too large.`: `size` over the config's `max_file_size`.", body = ErrorEnvelope),
        (status = 422, description = "A bad or missing field, `File type not allowed.` or `Security validation failed.` for the name, or a reference already taken.", body = ErrorEnvelope),
    )
)]
pub async fn presign(
    identity: Identity,
    body: Json<PresignRequest>,
    state: web::Data<SpacesState>,
) -> Result<HttpResponse, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let request = body.into_inner();
    let mut errors = Vec::new();
    let handle = request.space.filter(|s| !s.trim().is_empty());
    if handle.is_none() {
        errors.push(FieldError::new("space", "field is required"));
    }
    let filename = match request.filename.filter(|f| !f.trim().is_empty()) {
        Some(raw) => Some(names::file_name(&raw)?),
        None => {
            errors.push(FieldError::new("filename", "field is required"));
            None
        }
    };
    let content_type = match request.content_type.map(|c| c.trim().to_ascii_lowercase()) {
        Some(c) if names::is_mime(&c) => Some(c),
        Some(_) => {
            errors.push(FieldError::new(
                "content_type",
                "must be a MIME type such as video/mp4",
            ));
            None
        }
        None => {
            errors.push(FieldError::new("content_type", "field is required"));
            None
        }
    };
    let size = match request.size {
        Some(0) => {
            errors.push(FieldError::new("size", "must be at least 1"));
            None
        }
        Some(size) => Some(size),
        None => {
            errors.push(FieldError::new("size", "field is required"));
            None
        }
    };
    let reference = request
        .reference
        .filter(|r| !r.trim().is_empty())
        .map(|r| files::check_reference(&r, "ref", &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (handle, filename, content_type, size) = (
        handle.unwrap_or_default(),
        filename.unwrap_or_default(),
        content_type.unwrap_or_default(),
        size.unwrap_or_default(),
    );
    let config = request.upload_config;
    let target = state
        .db
        .run(move |conn| resolve_target(conn, Some(&reach), &handle, config.as_deref()))
        .await
        .map_err(ApiError::from)?;
    target.rules.check_size(size)?;
    // The name's extension must be one the config takes; the bytes are
    // checked on confirmation.
    let announced = intake::Kind {
        mime: content_type.clone(),
        extension: names::extension_of(&filename),
        sniffed_extension: None,
        resource_type: ResourceType::Other,
        format: None,
    };
    target.rules.check_kind(&announced)?;
    let expires_in = state.settings.uploads.presign_expires_secs;
    let file_id = ids::new_id(prefix::FILE);
    let object_key = target.object_key(&file_id);
    let upload_url = match state
        .storage
        .presigned_put(&object_key, std::time::Duration::from_secs(expires_in))
        .await?
    {
        Some(url) => url.to_string(),
        None => {
            let path = format!("{OBJECTS_PATH}/{file_id}");
            let expires = chrono::Utc::now().timestamp() + expires_in as i64;
            let query = signed_urls::sign(&state.secrets.object_puts, &path, &[], expires);
            format!("{}{path}?{query}", state.settings.uploads.public_url)
        }
    };
    let (id, key) = (file_id.clone(), object_key.clone());
    state
        .db
        .transaction(move |conn| {
            let folder = FolderChoice::default().resolve(conn, &target)?;
            if let Some(reference) = &reference
                && files::reference_taken(conn, &target.space.id, reference, None)?
            {
                return Err(Fail::Api(ApiError::validation(vec![FieldError::new(
                    "ref",
                    "has already been taken.",
                )])));
            }
            let resource_type = resource_type_of(&content_type);
            let name = choose_name(conn, &target, &id, resource_type, &filename)?;
            let at = now();
            let row = FileRow {
                id,
                workspace_id: target.space.workspace_id.clone(),
                space_id: target.space.id.clone(),
                folder_id: folder.map(|f| f.id),
                upload_config_id: Some(target.config.id().to_owned()),
                status: "pending".into(),
                storage_path: format!("{}/{name}", target.space.handle),
                name,
                original_name: filename,
                mime_type: content_type,
                extension: announced.extension,
                size: size as i64,
                object_key: key,
                sha256: None,
                reference,
                access_type: target.access_type.as_str().into(),
                resource_type: resource_type.as_str().into(),
                width: None,
                height: None,
                blur_hash: None,
                access_control: None,
                expires_at: Some(at + chrono::Duration::seconds(expires_in as i64)),
                created_at: at,
                updated_at: at,
            };
            diesel::insert_into(files_table::table)
                .values(&row)
                .execute(conn)?;
            Ok::<_, Fail>(())
        })
        .await
        .map_err(files::file_fail)?;
    Ok(HttpResponse::Created().json(Presigned {
        file_id,
        upload_url,
        object_key,
        expires_in,
    }))
}

/// A resource type from an announced MIME type (the bytes decide on
/// confirmation).
fn resource_type_of(mime: &str) -> ResourceType {
    match mime.split('/').next().unwrap_or_default() {
        "image" => ResourceType::Image,
        "video" => ResourceType::Video,
        "audio" => ResourceType::Audio,
        "text" => ResourceType::Text,
        _ => ResourceType::Other,
    }
}

/// The pending file `id`, whatever reaches it (the PUT is authorised by its
/// signature).
fn pending_file(conn: &mut DbConnection, id: &str) -> Result<(FileRow, SpaceRow), Fail> {
    let missing = || Fail::Api(ApiError::not_found("file"));
    let (row, space) = files::find(conn, &Reach::All, id).map_err(|_| missing())?;
    if row.status != "pending" {
        return Err(Fail::Api(ApiError::conflict(
            "the file is no longer pending",
        )));
    }
    Ok((row, space))
}

/// PUT a presigned upload (filesystem store)
///
/// The target of `upload_url` when the store is the filesystem: the raw
/// bytes of the file announced by `presign`, authorised by the URL's
/// signature (no credential). At most the announced `size` is taken (413
/// beyond); a later PUT replaces an earlier one until confirmation. 404 when
/// the store presigns its own URLs (S3).
#[utoipa::path(
    put,
    path = "/api/v1/upload/objects/{fileId}",
    operation_id = "put_presigned_object",
    tag = "upload",
    params(
        ("fileId" = String, Path, description = "The pending file (`fil_…`)."),
        ("expires" = i64, Query, description = "Signed: Unix seconds."),
        ("signature" = String, Query, description = "HMAC-SHA256, hex."),
    ),
    request_body(content_type = "application/octet-stream", content = String, description = "The file's bytes."),
    security(()),
    responses(
        (status = 200, description = "Stored; confirm the upload next. No body; `ETag` is the bytes' SHA-256."),
        (status = 403, description = "An expired or altered URL.", body = ErrorEnvelope),
        (status = 404, description = "No such pending file, or a store that presigns its own URLs.", body = ErrorEnvelope),
        (status = 409, description = "The file was confirmed already.", body = ErrorEnvelope),
        (status = 413, description = "`File too large.`: more than the announced size.", body = ErrorEnvelope),
    )
)]
pub async fn put_object(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<SpacesState>,
) -> Result<HttpResponse, ApiError> {
    if state.storage.presigns() {
        return Err(ApiError::not_found("presigned upload"));
    }
    let id = path.into_inner();
    signed_urls::verify(
        &state.secrets.object_puts,
        &format!("{OBJECTS_PATH}/{id}"),
        req.query_string(),
        chrono::Utc::now().timestamp(),
    )
    .map_err(refused)?;
    let (row, _) = state
        .db
        .run(move |conn| pending_file(conn, &id))
        .await
        .map_err(ApiError::from)?;
    let limit = row.size as u64;
    let body = capped(&req, payload, limit).map_err(|_| too_large())?;
    let mut spool = intake::Spool::new(&state.storage, row.object_key.clone(), 0, limit);
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| match e {
            PayloadError::Overflow => too_large(),
            other => ApiError::bad_request(format!("could not read the body: {other}")),
        })?;
        spool.push(&chunk).await?;
    }
    let written = match spool.finish().await? {
        intake::Body::Stored { written, .. } => written,
        intake::Body::Memory(bytes) => {
            state
                .storage
                .put(&row.object_key, Bytes::from(bytes))
                .await?
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header(("etag", format!("\"{}\"", written.sha256)))
        .finish())
}

/// Confirm a presigned upload
///
/// Checks the stored object against what was announced and the upload
/// config (its size exactly; its type by its bytes; an image's dimensions,
/// and its processing), then makes the file `active` and announces it
/// (`file.uploaded`). When the object does not pass, it is removed and the
/// file stays pending (PUT again, then confirm). Needs `spaces:write`.
#[utoipa::path(
    post,
    path = "/api/v1/upload/confirm/{fileId}",
    operation_id = "confirm_upload",
    tag = "upload",
    params(("fileId" = String, Path, description = "The pending file (`fil_…`).")),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The file, now active.", body = Envelope<FileView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such file within the credential's reach.", body = ErrorEnvelope),
        (status = 409, description = "The file is not pending (confirmed already).", body = ErrorEnvelope),
        (status = 413, description = "An image too large to process as its config asks.", body = ErrorEnvelope),
        (status = 422, description = "Nothing stored yet, a size other than announced, `File type not allowed.`, `Security validation failed.`, or bad image dimensions.", body = ErrorEnvelope),
    )
)]
pub async fn confirm(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FileView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let id = path.into_inner();
    let (row, target) = state
        .db
        .run(move |conn| {
            let (row, space) = files::find(conn, &reach, &id)?;
            if row.status != "pending" {
                return Err(Fail::Api(ApiError::conflict("the file is not pending")));
            }
            let config = row
                .upload_config_id
                .as_deref()
                .map(|c| upload_configs::of_space(conn, &space.id, c))
                .transpose()?
                .flatten();
            let config = match config {
                Some(config) => config,
                None => {
                    let active = space.active_upload_config_id.clone().unwrap_or_default();
                    upload_configs::of_space(conn, &space.id, &active)?.ok_or_else(|| {
                        Fail::Api(ApiError::conflict("the space has no upload config"))
                    })?
                }
            };
            Ok::<_, Fail>((row, Target::new(space, config)))
        })
        .await
        .map_err(ApiError::from)?;
    let stored = match check_stored(&state, &row, &target).await {
        Ok(stored) => stored,
        Err(e) => {
            // What was stored does not pass: removed, so a new PUT starts afresh.
            if e.status.as_u16() != 503
                && let Err(err) = state.storage.delete(&row.object_key).await
            {
                tracing::warn!(error = %err, "could not remove a refused presigned upload");
            }
            return Err(e);
        }
    };
    let request_id = service_kit::request_id::current();
    let delivery = state.delivery.clone();
    let view = state
        .db
        .transaction(move |conn| {
            let mut row = row;
            row.status = "active".into();
            row.size = stored.size as i64;
            row.sha256 = Some(stored.sha256);
            row.mime_type = stored.kind.mime;
            row.extension = stored.kind.extension;
            row.resource_type = stored.kind.resource_type.as_str().into();
            row.width = stored.width.map(|w| w as i32);
            row.height = stored.height.map(|h| h as i32);
            row.blur_hash = stored.blur_hash;
            row.expires_at = None;
            row.updated_at = now();
            let changed = diesel::update(
                files_table::table
                    .find(&row.id)
                    .filter(files_table::status.eq("pending")),
            )
            .set((
                files_table::status.eq(&row.status),
                files_table::size.eq(row.size),
                files_table::sha256.eq(&row.sha256),
                files_table::mime_type.eq(&row.mime_type),
                files_table::extension.eq(&row.extension),
                files_table::resource_type.eq(&row.resource_type),
                files_table::width.eq(row.width),
                files_table::height.eq(row.height),
                files_table::blur_hash.eq(&row.blur_hash),
                files_table::expires_at.eq(row.expires_at),
                files_table::updated_at.eq(row.updated_at),
            ))
            .execute(conn)?;
            if changed == 0 {
                return Err(Fail::Api(ApiError::conflict("the file is not pending")));
            }
            record_uploaded(conn, &row, &target, request_id)?;
            Ok::<_, Fail>(files::view(conn, &delivery, &target.space, row)?)
        })
        .await
        .map_err(ApiError::from)?;
    state.events.nudge();
    Ok(ApiResponse::ok(view))
}

/// Checks the object of a presigned upload as a direct upload is checked
/// (without copying it: its head is read, an image within
/// `uploads.image_memory_bytes` whole), and processes it as its config asks.
async fn check_stored(
    state: &SpacesState,
    row: &FileRow,
    target: &Target,
) -> Result<Stored, ApiError> {
    let info = match state.storage.head(&row.object_key).await {
        Ok(info) => info,
        Err(StorageError::NotFound) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "file",
                "has not been uploaded yet",
            )]));
        }
        Err(e) => return Err(e.into()),
    };
    if info.size != row.size as u64 {
        return Err(ApiError::validation(vec![FieldError::new(
            "size",
            format!(
                "must be the announced size: {} bytes were announced, {} stored",
                row.size, info.size
            ),
        )]));
    }
    let head = state
        .storage
        .read_head(&row.object_key, intake::HEAD_BYTES as u64)
        .await?;
    let kind = intake::classify(&row.original_name, &head)?;
    intake::check_announced(&kind, Some(&row.mime_type))?;
    target.rules.check_kind(&kind)?;
    target.rules.check_size(info.size)?;
    let image = intake::inspect(&kind, &head, Some(&target.rules))?;
    let body = if kind.format.is_some() && info.size <= state.settings.uploads.image_memory_bytes {
        intake::Body::Memory(state.storage.read_all(&row.object_key).await?)
    } else {
        intake::Body::Stored {
            key: row.object_key.clone(),
            written: state.storage.digest(&row.object_key).await?,
        }
    };
    let received = Received {
        id: row.id.clone(),
        original_name: row.original_name.clone(),
        kind,
        size: info.size,
        body,
        info: image,
    };
    intake::finalize(
        &state.storage,
        &state.image_work,
        received,
        &target.rules,
        &row.object_key,
    )
    .await
}
