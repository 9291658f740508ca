//! Spaces: `GET|POST|DELETE /api/v1/spaces`, `GET|PUT|DELETE /api/v1/spaces/{id}`.

use crate::access::{self, Reach};
use crate::openapi::{CursorParams, Envelope, ErrorEnvelope, ListEnvelope, NoData};
use crate::purge::PurgeRow;
use crate::schema::{space_api_keys, space_purges, spaces, upload_configs};
use crate::settings::{AccessControl, Security};
use crate::upload_configs::ConfigRow;
use crate::{Backend, Fail, SpacesState, handles, now, page_end, page_start, plain_text, rfc3339};
use actix_web::{HttpRequest, web};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use identity::Identity;
use serde::{Deserialize, Deserializer, Serialize};
use service_kit::cli::ServicePart;
use service_kit::ids::{self, prefix};
use service_kit::pagination::{CursorCodec, CursorPage, CursorQuery};
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use store::{DbConnection, StoreError};
use utoipa::ToSchema;

pub const MAX_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 1000;
/// Transactions retried when a concurrent writer took the handle picked.
const HANDLE_RETRIES: usize = 3;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = spaces)]
pub struct SpaceRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub name_key: String,
    pub description: Option<String>,
    pub handle: String,
    pub enabled: bool,
    pub folder_mode: String,
    pub custom_domain: Option<String>,
    pub webhook_url: Option<String>,
    pub access_control: String,
    pub security: String,
    pub active_upload_config_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// How a space's folders come about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FolderMode {
    /// Folders are created by the uploads that name them.
    Dynamic,
    /// Uploads may only go to folders that exist.
    Fixed,
}

impl FolderMode {
    fn as_str(self) -> &'static str {
        match self {
            FolderMode::Dynamic => "dynamic",
            FolderMode::Fixed => "fixed",
        }
    }

    fn parse(text: &str) -> FolderMode {
        match text {
            "fixed" => FolderMode::Fixed,
            _ => FolderMode::Dynamic,
        }
    }
}

/// A space, with its settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceView {
    /// `spc_…`
    id: String,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    /// Six lowercase letters or digits, unique across the platform.
    handle: String,
    enabled: bool,
    folder_mode: FolderMode,
    /// A hostname serving the space's content, lowercase.
    #[schema(required = true)]
    custom_domain: Option<String>,
    #[schema(required = true)]
    webhook_url: Option<String>,
    access_control: AccessControl,
    security: Security,
    /// `upc_…`: the upload config uploads use.
    #[schema(required = true)]
    active_upload_config_id: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<SpaceRow> for SpaceView {
    fn from(row: SpaceRow) -> SpaceView {
        SpaceView {
            access_control: AccessControl::stored(&row.access_control),
            security: Security::stored(&row.security),
            id: row.id,
            name: row.name,
            description: row.description,
            handle: row.handle,
            enabled: row.enabled,
            folder_mode: FolderMode::parse(&row.folder_mode),
            custom_domain: row.custom_domain,
            webhook_url: row.webhook_url,
            active_upload_config_id: row.active_upload_config_id,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

/// The space `id` if it is within `reach`; 404 otherwise (also for ids that
/// cannot exist, without a look-up).
pub(crate) fn find(conn: &mut DbConnection, reach: &Reach, id: &str) -> Result<SpaceRow, Fail> {
    let missing = || Fail::Api(ApiError::not_found("space"));
    if !ids::is_valid(prefix::SPACE, id) || reach.space().is_some_and(|s| s != id) {
        return Err(missing());
    }
    let mut query = spaces::table
        .filter(spaces::id.eq(id.to_owned()))
        .into_boxed::<Backend>();
    if let Some(workspace) = reach.workspace() {
        query = query.filter(spaces::workspace_id.eq(workspace.to_owned()));
    }
    query
        .select(SpaceRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(missing)
}

/// The space of something found by its id (a file, a folder): it must still
/// exist (a deleted space's contents await their purge) and be within
/// `reach`; otherwise the thing is `missing` too.
pub(crate) fn holding(
    conn: &mut DbConnection,
    reach: &Reach,
    space_id: &str,
    missing: impl FnOnce() -> Fail,
) -> Result<SpaceRow, Fail> {
    match find(conn, reach, space_id) {
        Err(Fail::Api(_)) => Err(missing()),
        found => found,
    }
}

/// `?space_id=&cursor=&limit=` of the lists of what spaces hold (files,
/// folders, upload configs).
#[derive(Debug, Deserialize)]
pub struct SpaceListQuery {
    space_id: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

impl SpaceListQuery {
    /// The space named, if any, and the page (400 for a bad cursor or limit).
    pub(crate) fn page(
        self,
        cursors: &CursorCodec,
    ) -> Result<(Option<String>, CursorPage), ApiError> {
        let page = cursors.validate(&CursorQuery {
            cursor: self.cursor,
            limit: self.limit,
        })?;
        Ok((self.space_id, page))
    }

    /// The space named (422 without one), and the page.
    pub(crate) fn space_page(
        self,
        cursors: &CursorCodec,
    ) -> Result<(String, CursorPage), ApiError> {
        let Some(space_id) = self.space_id.clone().filter(|s| !s.is_empty()) else {
            return Err(ApiError::validation(vec![FieldError::new(
                "space_id",
                "field is required",
            )]));
        };
        let (_, page) = self.page(cursors)?;
        Ok((space_id, page))
    }
}

/// The space whose handle is `handle`, within `reach` when one is given
/// (uploads authorised by a signed URL, or unsigned, have none); 404
/// otherwise.
pub(crate) fn find_by_handle(
    conn: &mut DbConnection,
    reach: Option<&Reach>,
    handle: &str,
) -> Result<SpaceRow, Fail> {
    let missing = || Fail::Api(ApiError::not_found("space"));
    if !handles::is_handle(handle) {
        return Err(missing());
    }
    let row = spaces::table
        .filter(spaces::handle.eq(handle.to_owned()))
        .select(SpaceRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(missing)?;
    match reach {
        Some(reach) if !reach.covers(&row.workspace_id, &row.id) => Err(missing()),
        _ => Ok(row),
    }
}

/// Records `space.updated` for the change of a space from `before` to `after`,
/// inside the transaction that writes it, and says whether it did: a change
/// that changes nothing records nothing. The data is `{space_id, name, handle,
/// changed}`, `changed` naming the fields (as the space's JSON names them) that
/// differ. `request_id` is captured before the transaction: the request's
/// task-local is not visible on the blocking thread that runs it.
pub(crate) fn record_update(
    conn: &mut DbConnection,
    before: &SpaceRow,
    after: &SpaceRow,
    request_id: Option<String>,
) -> Result<bool, StoreError> {
    let changed: Vec<&str> = [
        ("name", before.name != after.name),
        ("description", before.description != after.description),
        ("enabled", before.enabled != after.enabled),
        ("folder_mode", before.folder_mode != after.folder_mode),
        ("custom_domain", before.custom_domain != after.custom_domain),
        ("webhook_url", before.webhook_url != after.webhook_url),
        (
            "active_upload_config_id",
            before.active_upload_config_id != after.active_upload_config_id,
        ),
        // Compared as settings: a row written before the service normalized
        // them may hold other text for the same values.
        (
            "access_control",
            AccessControl::stored(&before.access_control)
                != AccessControl::stored(&after.access_control),
        ),
        (
            "security",
            Security::stored(&before.security) != Security::stored(&after.security),
        ),
    ]
    .into_iter()
    .filter_map(|(field, differs)| differs.then_some(field))
    .collect();
    if changed.is_empty() {
        return Ok(false);
    }
    let data = serde_json::json!({
        "space_id": after.id,
        "name": after.name,
        "handle": after.handle,
        "changed": changed,
    });
    let event = events::Event::new(
        crate::SpacesService::NAME,
        "space.updated",
        &after.id,
        data,
        request_id,
    )
    .with_workspace(&after.workspace_id);
    events::outbox::record(conn, &event)?;
    Ok(true)
}

/// A name as stored: trimmed, 1–100 characters, no control characters.
pub(crate) fn check_name(raw: &str, field: &str, errors: &mut Vec<FieldError>) -> String {
    let name = raw.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        errors.push(FieldError::new(
            field,
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    } else if !plain_text(&name, false) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    name
}

/// The case-insensitive form names are unique by.
pub(crate) fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// A description as stored: trimmed, at most 1000 characters; empty is none.
pub(crate) fn check_description(
    raw: Option<String>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let description = raw.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
    if let Some(d) = &description {
        if d.chars().count() > MAX_DESCRIPTION {
            errors.push(FieldError::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            ));
        } else if !plain_text(d, true) {
            errors.push(FieldError::new(
                "description",
                "must not contain control characters",
            ));
        }
    }
    description
}

fn name_taken(
    conn: &mut DbConnection,
    workspace_id: &str,
    key: &str,
    except: Option<&str>,
) -> Result<bool, StoreError> {
    let mut query = spaces::table
        .filter(spaces::workspace_id.eq(workspace_id.to_owned()))
        .filter(spaces::name_key.eq(key.to_owned()))
        .into_boxed::<Backend>();
    if let Some(id) = except {
        query = query.filter(spaces::id.ne(id.to_owned()));
    }
    Ok(query.count().get_result::<i64>(conn)? > 0)
}

/// A name another of its kind already has: a validation error, as Laravel's
/// `unique` rule makes it (`The name has already been taken.`).
pub(crate) fn name_taken_error() -> ApiError {
    ApiError::validation(vec![FieldError::new("name", "has already been taken.")])
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewSpace {
    /// Required: 1 to 100 characters (trimmed), unique within the workspace
    /// regardless of case.
    #[schema(value_type = String, required = true)]
    name: Option<String>,
    /// At most 1000 characters.
    #[serde(default)]
    description: Option<String>,
}

/// Create a space
///
/// Generates the space's handle and its `starter` upload config, which is made
/// active. Needs `spaces:write` and a workspace credential or an account key
/// (a space key cannot create spaces).
#[utoipa::path(
    post,
    path = "/api/v1/spaces",
    operation_id = "create_space",
    tag = "spaces",
    request_body = NewSpace,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 201, description = "The new space.", body = Envelope<SpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, with a space key, or no workspace selected.", body = ErrorEnvelope),
        (status = 422, description = "A bad `name` or `description`, or a name the workspace's spaces have already taken.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    body: Json<NewSpace>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<SpaceView>, ApiError> {
    let workspace_id = access::writable(&state, &identity)
        .await?
        .workspace_for_new_spaces()?;
    let NewSpace { name, description } = body.into_inner();
    let mut errors = Vec::new();
    let name = match name {
        Some(name) => check_name(&name, "name", &mut errors),
        None => {
            errors.push(FieldError::new("name", "field is required"));
            String::new()
        }
    };
    let description = check_description(description, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (workspace_id, name, description) =
            (workspace_id.clone(), name.clone(), description.clone());
        let created = state
            .db
            .transaction(move |conn| {
                insert_space(
                    conn,
                    workspace_id,
                    name,
                    description,
                    std::iter::repeat_with(handles::generate),
                )
            })
            .await;
        match created {
            Ok(row) => return Ok(ApiResponse::created(row.into())),
            Err(Fail::Store(e))
                if e.constraint() == Some("spaces_handle_unique") && attempt < HANDLE_RETRIES =>
            {
                continue;
            }
            Err(fail) => return Err(fail.into()),
        }
    }
}

/// Inserts a space with its `starter` upload config, active, taking the first
/// free handle of `handles`. Runs inside the caller's transaction.
pub(crate) fn insert_space(
    conn: &mut DbConnection,
    workspace_id: String,
    name: String,
    description: Option<String>,
    handles: impl IntoIterator<Item = String>,
) -> Result<SpaceRow, Fail> {
    let key = name_key(&name);
    if name_taken(conn, &workspace_id, &key, None)? {
        return Err(Fail::Api(name_taken_error()));
    }
    let handle = handles::pick_free(conn, handles)?.ok_or_else(|| {
        Fail::Api(ApiError::service_unavailable("no free handle; try again").with_retry_after(1))
    })?;
    let at = now();
    let mut row = SpaceRow {
        id: ids::new_id(prefix::SPACE),
        workspace_id: workspace_id.clone(),
        name,
        name_key: key,
        description,
        handle,
        enabled: true,
        folder_mode: FolderMode::Dynamic.as_str().into(),
        custom_domain: None,
        webhook_url: None,
        access_control: AccessControl::default().to_stored(),
        security: Security::default().to_stored(),
        active_upload_config_id: None,
        created_at: at,
        updated_at: at,
    };
    diesel::insert_into(spaces::table)
        .values(&row)
        .execute(conn)?;
    let starter = ConfigRow::starter(row.id.clone(), workspace_id);
    diesel::insert_into(upload_configs::table)
        .values(&starter)
        .execute(conn)?;
    diesel::update(spaces::table.find(&row.id))
        .set(spaces::active_upload_config_id.eq(starter.id()))
        .execute(conn)?;
    row.active_upload_config_id = Some(starter.id().to_owned());
    Ok(row)
}

/// List spaces
///
/// The spaces the credential reaches, oldest first: every space of the
/// workspace, or a space key's own space. Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/spaces",
    operation_id = "list_spaces",
    tag = "spaces",
    params(CursorParams),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "A page of spaces; `next_cursor` leads to the next one.", body = ListEnvelope<Vec<SpaceView>>),
        (status = 400, description = "A bad `cursor` or `limit`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    query: Query<CursorQuery>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Vec<SpaceView>>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let page = state.cursors.validate(&query)?;
    let after = page_start(&page)?;
    let limit = page.limit;
    let mut rows = state
        .db
        .run(move |conn| {
            let mut query = spaces::table.into_boxed::<Backend>();
            if let Some(workspace) = reach.workspace() {
                query = query.filter(spaces::workspace_id.eq(workspace.to_owned()));
            }
            if let Some(space) = reach.space() {
                query = query.filter(spaces::id.eq(space.to_owned()));
            }
            if let Some((at, id)) = after {
                query = query.filter(spaces::created_at.ge(at)).filter(
                    spaces::created_at
                        .gt(at)
                        .or(spaces::created_at.eq(at).and(spaces::id.gt(id))),
                );
            }
            query
                .order((spaces::created_at.asc(), spaces::id.asc()))
                .limit(i64::from(limit) + 1)
                .select(SpaceRow::as_select())
                .load(conn)
                .map_err(StoreError::from)
        })
        .await?;
    let (has_more, last) = page_end(&mut rows, limit, |r| (r.created_at, &r.id));
    Ok(
        ApiResponse::ok(rows.into_iter().map(SpaceView::from).collect()).meta(page.meta(
            &state.cursors,
            has_more,
            last.as_ref(),
        )),
    )
}

/// Get a space
///
/// With its access control and security settings. Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/spaces/{id}",
    operation_id = "get_space",
    tag = "spaces",
    params(("id" = String, Path, description = "The space's id (`spc_…`).")),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "The space.", body = Envelope<SpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<SpaceView>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let id = path.into_inner();
    let row = state.db.run(move |conn| find(conn, &reach, &id)).await?;
    Ok(ApiResponse::ok(row.into()))
}

/// `null` and absent told apart: `Some(None)` clears, `None` keeps.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SpaceUpdate {
    /// 1 to 100 characters (trimmed), unique within the workspace regardless of case.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, required = false)]
    name: Option<Option<String>>,
    /// At most 1000 characters; `null` clears it. Absent fields keep their value.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    description: Option<Option<String>>,
    enabled: Option<bool>,
    folder_mode: Option<FolderMode>,
    /// A hostname (e.g. `media.example.com`) no other space uses; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    custom_domain: Option<Option<String>>,
    /// An `https` URL without credentials, not pointing to localhost or a
    /// private, loopback or link-local address; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    webhook_url: Option<Option<String>>,
    /// One of the space's upload configs (`upc_…`).
    active_upload_config_id: Option<String>,
}

/// Update a space
///
/// Changes the fields named (`{"webhook_url": …}` alone is a whole request);
/// absent fields keep their value, `null` clears the nullable ones. Needs
/// `spaces:write`.
#[utoipa::path(
    put,
    path = "/api/v1/spaces/{id}",
    operation_id = "update_space",
    tag = "spaces",
    params(("id" = String, Path, description = "The space's id (`spc_…`).")),
    request_body = SpaceUpdate,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The space as updated.", body = Envelope<SpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
        (status = 409, description = "Another space uses the custom domain.", body = ErrorEnvelope),
        (status = 422, description = "A bad field, or a name another space of the workspace has taken; `errors` names each.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Identity,
    path: web::Path<String>,
    body: Json<SpaceUpdate>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<SpaceView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let id = path.into_inner();
    let update = body.into_inner();
    let mut errors = Vec::new();
    let name = match update.name {
        None => None,
        Some(None) => {
            errors.push(FieldError::new("name", "field is required"));
            None
        }
        Some(Some(name)) => Some(check_name(&name, "name", &mut errors)),
    };
    let description = update
        .description
        .map(|d| check_description(d, &mut errors));
    let custom_domain = update.custom_domain.map(|d| {
        d.and_then(|d| match crate::addresses::hostname(&d) {
            Ok(host) => Some(host),
            Err(message) => {
                errors.push(FieldError::new("custom_domain", message));
                None
            }
        })
    });
    let allow_private = state.allow_private_webhooks;
    let webhook_url = update.webhook_url.map(|u| {
        u.and_then(|u| match crate::addresses::webhook_url(&u, allow_private) {
            Ok(url) => Some(url),
            Err(message) => {
                errors.push(FieldError::new("webhook_url", message));
                None
            }
        })
    });
    if let Some(config) = &update.active_upload_config_id
        && !ids::is_valid(prefix::UPLOAD_CONFIG, config)
    {
        errors.push(FieldError::new(
            "active_upload_config_id",
            "must be the id of one of the space's upload configs",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (enabled, folder_mode, active) = (
        update.enabled,
        update.folder_mode,
        update.active_upload_config_id,
    );
    let request_id = service_kit::request_id::current();
    let (row, recorded) = state
        .db
        .transaction(move |conn| {
            let before = find(conn, &reach, &id)?;
            let mut row = before.clone();
            if let Some(name) = name {
                let key = name_key(&name);
                if name_taken(conn, &row.workspace_id, &key, Some(&row.id))? {
                    return Err(Fail::Api(name_taken_error()));
                }
                row.name = name;
                row.name_key = key;
            }
            if let Some(Some(domain)) = &custom_domain {
                let used: i64 = spaces::table
                    .filter(spaces::custom_domain.eq(domain))
                    .filter(spaces::id.ne(&row.id))
                    .count()
                    .get_result(conn)?;
                if used > 0 {
                    return Err(Fail::Api(ApiError::conflict(
                        "the custom domain is used by another space",
                    )));
                }
            }
            if let Some(config) = &active {
                let own: i64 = upload_configs::table
                    .filter(upload_configs::id.eq(config))
                    .filter(upload_configs::space_id.eq(&row.id))
                    .count()
                    .get_result(conn)?;
                if own == 0 {
                    return Err(Fail::Api(ApiError::validation(vec![FieldError::new(
                        "active_upload_config_id",
                        "must be the id of one of the space's upload configs",
                    )])));
                }
                row.active_upload_config_id = Some(config.clone());
            }
            if let Some(d) = description {
                row.description = d;
            }
            if let Some(e) = enabled {
                row.enabled = e;
            }
            if let Some(m) = folder_mode {
                row.folder_mode = m.as_str().into();
            }
            if let Some(d) = custom_domain {
                row.custom_domain = d;
            }
            if let Some(u) = webhook_url {
                row.webhook_url = u;
            }
            row.updated_at = now();
            diesel::update(spaces::table.find(&row.id))
                .set((
                    spaces::name.eq(&row.name),
                    spaces::name_key.eq(&row.name_key),
                    spaces::description.eq(&row.description),
                    spaces::enabled.eq(row.enabled),
                    spaces::folder_mode.eq(&row.folder_mode),
                    spaces::custom_domain.eq(&row.custom_domain),
                    spaces::webhook_url.eq(&row.webhook_url),
                    spaces::active_upload_config_id.eq(&row.active_upload_config_id),
                    spaces::updated_at.eq(row.updated_at),
                ))
                .execute(conn)?;
            let recorded = record_update(conn, &before, &row, request_id)?;
            Ok((row, recorded))
        })
        .await
        .map_err(ApiError::from)?;
    state.space_content_changed(&row.id).await;
    if recorded {
        state.events.nudge();
    }
    Ok(ApiResponse::ok(row.into()))
}

/// Takes the space's row lock for the rest of the transaction, so that no key
/// can be minted for it (the foreign key check waits for the lock) between
/// reading its keys and deleting it: every deleted key is revoked. SQLite's
/// write-locked transactions serialize writers already.
fn lock_space(conn: &mut DbConnection, id: &str) -> Result<(), StoreError> {
    if let DbConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT id FROM spaces WHERE id = $1 FOR UPDATE")
            .bind::<diesel::sql_types::Text, _>(id)
            .execute(pg)?;
    }
    Ok(())
}

/// Deletes a space within reach with its configs and keys; returns the ids of
/// the keys, which the caller revokes.
async fn remove(state: &SpacesState, reach: Reach, id: String) -> Result<(), ApiError> {
    let (keys, space_id) = state
        .db
        .transaction(move |conn| {
            let row = find(conn, &reach, &id)?;
            lock_space(conn, &row.id)?;
            let keys: Vec<String> = space_api_keys::table
                .filter(space_api_keys::space_id.eq(&row.id))
                .select(space_api_keys::id)
                .load(conn)?;
            diesel::delete(space_api_keys::table.filter(space_api_keys::space_id.eq(&row.id)))
                .execute(conn)?;
            diesel::update(spaces::table.find(&row.id))
                .set(spaces::active_upload_config_id.eq(None::<String>))
                .execute(conn)?;
            diesel::delete(upload_configs::table.filter(upload_configs::space_id.eq(&row.id)))
                .execute(conn)?;
            diesel::delete(spaces::table.find(&row.id)).execute(conn)?;
            // Its files, folders and objects go in the background.
            diesel::insert_into(space_purges::table)
                .values(&PurgeRow::new(&row.id, &row.workspace_id, &row.handle))
                .execute(conn)?;
            Ok::<_, Fail>((keys, row.id))
        })
        .await
        .map_err(ApiError::from)?;
    state.space_content_changed(&space_id).await;
    state.purges.wake();
    state.revoke_space_keys(keys).await;
    Ok(())
}

/// Delete a space
///
/// With its upload configs and API keys; the keys stop working at every
/// gateway within a second. Needs `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/spaces/{id}",
    operation_id = "delete_space",
    tag = "spaces",
    params(("id" = String, Path, description = "The space's id (`spc_…`).")),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "Deleted; `data` is null.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<()>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    remove(&state, reach, path.into_inner()).await?;
    Ok(ApiResponse::ok(()).message("space deleted"))
}

#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteBody {
    /// The space's id (`spc_…`), when not given as `?id=`.
    id: Option<String>,
}

/// Whether the request came without a body (a `DELETE` usually does).
pub(crate) fn bodiless(req: &HttpRequest) -> bool {
    let headers = req.headers();
    !headers.contains_key("transfer-encoding")
        && headers
            .get("content-length")
            .is_none_or(|length| length.as_bytes() == b"0")
}

/// Delete a space (by query or body)
///
/// The Tuzzle forms of `DELETE /api/v1/spaces/{id}`: the same, with the id as
/// `?id=` or in a JSON body `{"id": …}` (as Tuzzle's SDK sends it); when both
/// name one, they must agree. Needs `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/spaces",
    operation_id = "delete_space_by_query",
    tag = "spaces",
    params(("id" = Option<String>, Query, description = "The space's id (`spc_…`), unless the body names it.")),
    request_body(content = Option<DeleteBody>, description = "Optional: `{\"id\": …}` instead of `?id=`."),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "Deleted; `data` is null.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "No `id`, or two that differ.", body = ErrorEnvelope),
    )
)]
pub async fn delete_by_query(
    identity: Identity,
    req: HttpRequest,
    query: Query<DeleteQuery>,
    body: Result<Json<Option<DeleteBody>>, ApiError>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<()>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let from_body = match body {
        Ok(body) => body.into_inner().and_then(|b| b.id),
        Err(_) if bodiless(&req) => None,
        Err(e) => return Err(e),
    };
    let given = |id: Option<String>| id.filter(|id| !id.trim().is_empty());
    let id = match (given(query.into_inner().id), given(from_body)) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::validation(vec![FieldError::new(
                "id",
                "must be the same in the query and the body",
            )]));
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "id",
                "field is required",
            )]));
        }
    };
    remove(&state, reach, id).await?;
    Ok(ApiResponse::ok(()).message("space deleted"))
}
