//! Folders: `POST|GET /api/v1/folders`, `GET|PUT|DELETE /api/v1/folders/{id}`,
//! `PUT|DELETE /api/v1/folders/{id}/access-control`.
//!
//! A folder's `path` is its full path with a trailing slash
//! (`photos/vacation/`), unique within its space; renaming or moving a folder
//! rewrites the paths below it. A folder is deleted only when empty (no
//! files, no folders). Uploads into a `dynamic` space create the folders a
//! `folder_path` names ([`ensure_path`]).

use crate::access::{self, Reach};
use crate::access_control::{self, EffectiveAccess};
use crate::openapi::{CursorParams, Envelope, ErrorEnvelope, ListEnvelope, NoData};
use crate::schema::{files, folders};
use crate::settings::{AccessControl, AccessControlUpdate, Security};
use crate::spaces::{self, SpaceListQuery, SpaceRow, nullable};
use crate::{Backend, Fail, SpacesState, now, page_end, page_start, rfc3339};
use actix_web::web;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use identity::Identity;
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use store::{DbConnection, StoreError};
use utoipa::ToSchema;

/// Why a folder that holds something is not deleted.
const NOT_EMPTY: &str = "the folder is not empty: delete or move its files and folders first";

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = folders)]
pub(crate) struct FolderRow {
    pub id: String,
    pub workspace_id: String,
    pub space_id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub path: String,
    pub access_control: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl FolderRow {
    /// A new folder `name` at `path` of `space`, in `parent` (or at the
    /// root), with no setting of its own.
    fn new(space: &SpaceRow, parent: Option<&FolderRow>, name: String, path: String) -> FolderRow {
        let at = now();
        FolderRow {
            id: ids::new_id(prefix::FOLDER),
            workspace_id: space.workspace_id.clone(),
            space_id: space.id.clone(),
            parent_id: parent.map(|p| p.id.clone()),
            name,
            path,
            access_control: None,
            created_at: at,
            updated_at: at,
        }
    }
}

/// A folder, with the access control in force for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderView {
    /// `fld_…`
    id: String,
    name: String,
    /// The full path, with a trailing slash (`photos/vacation/`).
    path: String,
    /// `spc_…`
    space_id: String,
    /// `fld_…`; null for a folder at the space's root.
    #[schema(required = true)]
    parent_id: Option<String>,
    /// Whether the folder has folders in it.
    has_children: bool,
    /// In force for the folder and what it holds (unless they set their own).
    access_control: EffectiveAccess,
    /// The space's security settings, which its folders share.
    security: Security,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// A folder name: one path segment (1 to 255 bytes; no `/` or `\`, `.` or
/// `..`, control characters or surrounding spaces).
fn check_name(raw: &str, errors: &mut Vec<FieldError>) -> String {
    let name = raw.trim().to_owned();
    let single = !name.contains(['/', '\\']);
    match media::safe_folder_path(&name) {
        Ok(clean) if single && clean == name => {}
        _ => errors.push(FieldError::new(
            "name",
            "must be a folder name of 1 to 255 bytes, without /, \\, control characters, . or ..",
        )),
    }
    name
}

/// The folder `id` and its space, if the space exists and is within
/// `reach`; 404 otherwise.
pub(crate) fn find(
    conn: &mut DbConnection,
    reach: &Reach,
    id: &str,
) -> Result<(FolderRow, SpaceRow), Fail> {
    let missing = || Fail::Api(ApiError::not_found("folder"));
    if !ids::is_valid(prefix::FOLDER, id) {
        return Err(missing());
    }
    let mut query = folders::table
        .filter(folders::id.eq(id.to_owned()))
        .into_boxed::<Backend>();
    if let Some(workspace) = reach.workspace() {
        query = query.filter(folders::workspace_id.eq(workspace.to_owned()));
    }
    if let Some(space) = reach.space() {
        query = query.filter(folders::space_id.eq(space.to_owned()));
    }
    let row = query
        .select(FolderRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(missing)?;
    let space = spaces::holding(conn, reach, &row.space_id, missing)?;
    Ok((row, space))
}

/// The folder at `path` (`a/b/`) of the space.
pub(crate) fn find_by_path(
    conn: &mut DbConnection,
    space_id: &str,
    path: &str,
) -> Result<Option<FolderRow>, StoreError> {
    Ok(folders::table
        .filter(folders::space_id.eq(space_id))
        .filter(folders::path.eq(path))
        .select(FolderRow::as_select())
        .first(conn)
        .optional()?)
}

/// The folder `path` (`a/b/`, normalised) of `space`, creating the folders
/// of it that are missing. Runs inside the caller's transaction.
pub(crate) fn ensure_path(
    conn: &mut DbConnection,
    space: &SpaceRow,
    path: &str,
) -> Result<FolderRow, StoreError> {
    let mut parent: Option<FolderRow> = None;
    for level in access_control::ancestor_paths(path) {
        parent = Some(match find_by_path(conn, &space.id, &level)? {
            Some(folder) => folder,
            None => {
                let name = level
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let row = FolderRow::new(space, parent.as_ref(), name, level);
                diesel::insert_into(folders::table)
                    .values(&row)
                    .execute(conn)?;
                row
            }
        });
    }
    parent.ok_or(StoreError::NotFound)
}

/// The settings of `path` and the folders above it, nearest first:
/// `(id, own setting)`.
pub(crate) fn chain(
    conn: &mut DbConnection,
    space_id: &str,
    path: &str,
) -> Result<Vec<(String, Option<AccessControl>)>, StoreError> {
    let paths = access_control::ancestor_paths(path);
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<(String, String, Option<String>)> = folders::table
        .filter(folders::space_id.eq(space_id))
        .filter(folders::path.eq_any(&paths))
        .select((folders::id, folders::path, folders::access_control))
        .load(conn)?;
    rows.sort_by_key(|row| std::cmp::Reverse(row.1.len()));
    Ok(rows
        .into_iter()
        .map(|(id, _, setting)| (id, access_control::parse(setting.as_deref())))
        .collect())
}

fn views(
    conn: &mut DbConnection,
    space: &SpaceRow,
    rows: Vec<FolderRow>,
) -> Result<Vec<FolderView>, StoreError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let parents: Vec<Option<String>> = folders::table
        .filter(folders::parent_id.eq_any(&ids))
        .select(folders::parent_id)
        .distinct()
        .load(conn)?;
    let space_access = AccessControl::stored(&space.access_control);
    let security = Security::stored(&space.security);
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let has_children = parents.iter().flatten().any(|p| *p == row.id);
        // The folder's own setting heads its chain.
        let mut above = chain(conn, &row.space_id, &row.path)?;
        let own = match above.first() {
            Some((id, _)) if *id == row.id => above.remove(0).1,
            _ => None,
        };
        let access = access_control::resolve(own.as_ref(), &above, &space.id, &space_access);
        out.push(FolderView {
            has_children,
            access_control: access,
            security: security.clone(),
            id: row.id,
            name: row.name,
            path: row.path,
            space_id: row.space_id,
            parent_id: row.parent_id,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        });
    }
    Ok(out)
}

fn view(conn: &mut DbConnection, space: &SpaceRow, row: FolderRow) -> Result<FolderView, Fail> {
    Ok(views(conn, space, vec![row])?
        .pop()
        .expect("one folder in, one view out"))
}

/// The folder `id` as stored now (after a change), viewed.
fn stored_view(conn: &mut DbConnection, space: &SpaceRow, id: &str) -> Result<FolderView, Fail> {
    let row = folders::table
        .find(id)
        .select(FolderRow::as_select())
        .first(conn)?;
    view(conn, space, row)
}

fn name_taken_error() -> ApiError {
    ApiError::validation(vec![FieldError::new("name", "has already been taken.")])
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewFolder {
    /// Required: one path segment, 1 to 255 bytes, unique within its parent.
    #[schema(value_type = String, required = true)]
    name: Option<String>,
    /// Required: the space (`spc_…`).
    #[schema(value_type = String, required = true)]
    space_id: Option<String>,
    /// The parent folder (`fld_…`, of the same space); absent or null: the
    /// space's root.
    parent_id: Option<String>,
}

/// Create a folder
///
/// At the space's root, or in `parent_id`. Needs `spaces:write`.
#[utoipa::path(
    post,
    path = "/api/v1/folders",
    operation_id = "create_folder",
    tag = "folders",
    request_body = NewFolder,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 201, description = "The new folder.", body = Envelope<FolderView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "`space_id` names no space within reach.", body = ErrorEnvelope),
        (status = 422, description = "A bad field, a parent of another space, or a name its parent already holds.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    body: Json<NewFolder>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FolderView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let NewFolder {
        name,
        space_id,
        parent_id,
    } = body.into_inner();
    let mut errors = Vec::new();
    let name = match name {
        Some(name) => check_name(&name, &mut errors),
        None => {
            errors.push(FieldError::new("name", "field is required"));
            String::new()
        }
    };
    let space_id = space_id.filter(|s| !s.trim().is_empty());
    if space_id.is_none() {
        errors.push(FieldError::new("space_id", "field is required"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let space_id = space_id.unwrap_or_default();
    let view = state
        .db
        .transaction(move |conn| {
            let space = spaces::find(conn, &reach, space_id.trim())?;
            let parent = match parent_id.filter(|p| !p.is_empty()) {
                Some(id) => Some(find_in(conn, &reach, &space, &id, "parent_id")?),
                None => None,
            };
            let path = format!("{}{name}/", parent.as_ref().map_or("", |p| p.path.as_str()));
            if find_by_path(conn, &space.id, &path)?.is_some() {
                return Err(Fail::Api(name_taken_error()));
            }
            let row = FolderRow::new(&space, parent.as_ref(), name, path);
            diesel::insert_into(folders::table)
                .values(&row)
                .execute(conn)?;
            view(conn, &space, row)
        })
        .await
        .map_err(folder_fail)?;
    Ok(ApiResponse::created(view))
}

/// The folder `id` that the request's `field` names in `space`: 422 unless
/// it is one of the space's folders.
pub(crate) fn find_in(
    conn: &mut DbConnection,
    reach: &Reach,
    space: &SpaceRow,
    id: &str,
    field: &str,
) -> Result<FolderRow, Fail> {
    match find(conn, reach, id) {
        Ok((folder, _)) if folder.space_id == space.id => Ok(folder),
        _ => Err(Fail::Api(ApiError::validation(vec![FieldError::new(
            field,
            format!("The selected {} is invalid.", field.replace('_', " ")),
        )]))),
    }
}

/// A unique path taken by a concurrent writer is a name already taken.
fn folder_fail(fail: Fail) -> ApiError {
    match fail {
        Fail::Store(e) if e.constraint() == Some("folders_path_unique") => name_taken_error(),
        other => other.into(),
    }
}

/// `?space_id=` of the folder list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `SpaceListQuery` reads it
pub(crate) struct SpaceFilter {
    /// Required: the space whose folders to list (`spc_…`).
    space_id: String,
}

/// List folders
///
/// A space's folders, oldest first (parents before their children). Needs
/// `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/folders",
    operation_id = "list_folders",
    tag = "folders",
    params(SpaceFilter, CursorParams),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "A page of folders.", body = ListEnvelope<Vec<FolderView>>),
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
) -> Result<ApiResponse<Vec<FolderView>>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let (space_id, page) = query.into_inner().space_page(&state.cursors)?;
    let after = page_start(&page)?;
    let limit = page.limit;
    let (views, has_more, last) = state
        .db
        .run(move |conn| {
            let space = spaces::find(conn, &reach, &space_id)?;
            let mut query = folders::table
                .filter(folders::space_id.eq(space.id.clone()))
                .into_boxed::<Backend>();
            if let Some((at, id)) = after {
                query = query.filter(folders::created_at.ge(at)).filter(
                    folders::created_at
                        .gt(at)
                        .or(folders::created_at.eq(at).and(folders::id.gt(id))),
                );
            }
            let mut rows: Vec<FolderRow> = query
                .order((folders::created_at.asc(), folders::id.asc()))
                .limit(i64::from(limit) + 1)
                .select(FolderRow::as_select())
                .load(conn)?;
            let (has_more, last) = page_end(&mut rows, limit, |r| (r.created_at, &r.id));
            Ok::<_, Fail>((views(conn, &space, rows)?, has_more, last))
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::ok(views).meta(page.meta(&state.cursors, has_more, last.as_ref())))
}

/// Get a folder
///
/// Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/folders/{id}",
    operation_id = "get_folder",
    tag = "folders",
    params(("id" = String, Path, description = "The folder's id (`fld_…`).")),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "The folder.", body = Envelope<FolderView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such folder within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FolderView>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let id = path.into_inner();
    let view = state
        .db
        .run(move |conn| {
            let (row, space) = find(conn, &reach, &id)?;
            view(conn, &space, row)
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::ok(view))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FolderUpdate {
    /// A new name: one path segment, 1 to 255 bytes.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, required = false)]
    name: Option<Option<String>>,
    /// A new parent (`fld_…` of the same space, not the folder itself nor
    /// one inside it); null: the space's root. Absent: unchanged.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    parent_id: Option<Option<String>>,
}

/// Update a folder
///
/// Renames or moves it; the paths of the folders inside follow. Files keep
/// their storage paths and URLs. Needs `spaces:write`.
#[utoipa::path(
    put,
    path = "/api/v1/folders/{id}",
    operation_id = "update_folder",
    tag = "folders",
    params(("id" = String, Path, description = "The folder's id (`fld_…`).")),
    request_body = FolderUpdate,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The folder as updated.", body = Envelope<FolderView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such folder within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "A bad name or parent, or a name the target already holds.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Identity,
    path: web::Path<String>,
    body: Json<FolderUpdate>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FolderView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let id = path.into_inner();
    let FolderUpdate { name, parent_id } = body.into_inner();
    let mut errors = Vec::new();
    let name = match name {
        None => None,
        Some(None) => {
            errors.push(FieldError::new("name", "field is required"));
            None
        }
        Some(Some(name)) => Some(check_name(&name, &mut errors)),
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let view = state
        .db
        .transaction(move |conn| {
            let (row, space) = find(conn, &reach, &id)?;
            let parent = match parent_id {
                None => match &row.parent_id {
                    Some(p) => Some(find_in(conn, &reach, &space, p, "parent_id")?),
                    None => None,
                },
                Some(None) => None,
                Some(Some(p)) => {
                    let parent = find_in(conn, &reach, &space, &p, "parent_id")?;
                    if parent.path.starts_with(&row.path) {
                        return Err(Fail::Api(ApiError::validation(vec![FieldError::new(
                            "parent_id",
                            "must not be the folder itself or a folder inside it",
                        )])));
                    }
                    Some(parent)
                }
            };
            let name = name.unwrap_or_else(|| row.name.clone());
            let path = format!("{}{name}/", parent.as_ref().map_or("", |p| p.path.as_str()));
            if path != row.path && find_by_path(conn, &space.id, &path)?.is_some() {
                return Err(Fail::Api(name_taken_error()));
            }
            move_subtree(conn, &space.id, &row.path, &path)?;
            let updated_at = now();
            diesel::update(folders::table.find(&row.id))
                .set((
                    folders::name.eq(&name),
                    folders::parent_id.eq(parent.as_ref().map(|p| p.id.clone())),
                    folders::updated_at.eq(updated_at),
                ))
                .execute(conn)?;
            stored_view(conn, &space, &row.id)
        })
        .await
        .map_err(folder_fail)?;
    state.space_content_changed(&view.space_id).await;
    Ok(ApiResponse::ok(view))
}

/// Rewrites the path `from` (and every path below it) to `to`.
fn move_subtree(
    conn: &mut DbConnection,
    space_id: &str,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    if from == to {
        return Ok(());
    }
    let escaped: String = from
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let below: Vec<(String, String)> = folders::table
        .filter(folders::space_id.eq(space_id))
        .filter(folders::path.like(format!("{escaped}%")).escape('\\'))
        .select((folders::id, folders::path))
        .load(conn)?;
    // Two passes through temporary paths, so that no intermediate state
    // breaks the unique path (moving `a/` to `a/x/`'s old place, say).
    for (id, _) in &below {
        diesel::update(folders::table.find(id))
            .set(folders::path.eq(format!("\u{1}{id}")))
            .execute(conn)?;
    }
    for (id, path) in below {
        if let Some(rest) = path.strip_prefix(from) {
            diesel::update(folders::table.find(&id))
                .set(folders::path.eq(format!("{to}{rest}")))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Delete a folder
///
/// Only an empty folder: without files (pending ones included) and folders
/// (409 otherwise). Needs `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/folders/{id}",
    operation_id = "delete_folder",
    tag = "folders",
    params(("id" = String, Path, description = "The folder's id (`fld_…`).")),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "Deleted; `data` is null.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such folder within the credential's reach.", body = ErrorEnvelope),
        (status = 409, description = "The folder holds files or folders.", body = ErrorEnvelope),
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
            let (row, _) = find(conn, &reach, &id)?;
            let children: i64 = folders::table
                .filter(folders::parent_id.eq(&row.id))
                .count()
                .get_result(conn)?;
            let held: i64 = files::table
                .filter(files::folder_id.eq(&row.id))
                .count()
                .get_result(conn)?;
            if children + held > 0 {
                return Err(Fail::Api(ApiError::conflict(NOT_EMPTY)));
            }
            diesel::delete(folders::table.find(&row.id)).execute(conn)?;
            Ok::<_, Fail>(())
        })
        .await
        .map_err(|fail| match fail {
            // A file or folder added meanwhile (the foreign key held).
            Fail::Store(StoreError::ConstraintViolation { .. }) => ApiError::conflict(NOT_EMPTY),
            other => other.into(),
        })?;
    Ok(ApiResponse::ok(()).message("folder deleted"))
}

/// Sets (`Some`) or clears (`None`) a folder's own access control.
async fn change_access(
    identity: Identity,
    id: String,
    state: web::Data<SpacesState>,
    update: Option<AccessControlUpdate>,
) -> Result<ApiResponse<FolderView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let view = state
        .db
        .transaction(move |conn| {
            let (row, space) = find(conn, &reach, &id)?;
            let setting = access_control::changed(row.access_control.as_deref(), update, || {
                let mut above = chain(conn, &space.id, &row.path)?;
                // What the folder would inherit: its chain without itself.
                above.retain(|(folder, _)| *folder != row.id);
                Ok::<_, StoreError>(access_control::resolve(
                    None,
                    &above,
                    &space.id,
                    &AccessControl::stored(&space.access_control),
                ))
            })?;
            diesel::update(folders::table.find(&row.id))
                .set((
                    folders::access_control.eq(setting),
                    folders::updated_at.eq(now()),
                ))
                .execute(conn)?;
            stored_view(conn, &space, &row.id)
        })
        .await
        .map_err(ApiError::from)?;
    state.space_content_changed(&view.space_id).await;
    Ok(ApiResponse::ok(view))
}

/// Set a folder's access control
///
/// The folder's own setting, for it and what it holds (unless they set their
/// own): starts from what it inherits (or its own setting) and changes the
/// fields named. Needs `spaces:write`.
#[utoipa::path(
    put,
    path = "/api/v1/folders/{id}/access-control",
    operation_id = "set_folder_access_control",
    tag = "folders",
    params(("id" = String, Path, description = "The folder's id (`fld_…`).")),
    request_body = AccessControlUpdate,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The folder as updated.", body = Envelope<FolderView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such folder within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "A mistyped field.", body = ErrorEnvelope),
    )
)]
pub async fn set_access_control(
    identity: Identity,
    path: web::Path<String>,
    body: Json<AccessControlUpdate>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FolderView>, ApiError> {
    change_access(identity, path.into_inner(), state, Some(body.into_inner())).await
}

/// Reset a folder's access control
///
/// The folder inherits again (from the folder above it, or the space).
/// Needs `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/folders/{id}/access-control",
    operation_id = "reset_folder_access_control",
    tag = "folders",
    params(("id" = String, Path, description = "The folder's id (`fld_…`).")),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The folder as reset.", body = Envelope<FolderView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such folder within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn reset_access_control(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FolderView>, ApiError> {
    change_access(identity, path.into_inner(), state, None).await
}
