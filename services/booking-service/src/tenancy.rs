//! Whose data a caller reaches. Every credential acts in one workspace, except
//! the operator's system key (`x-api-key: sys_…`) sent without
//! `x-workspace-key`, as SpaceOS integrators use it: it reaches every
//! workspace. On a route that names a resource (`/{id}`) it acts in that
//! resource's workspace; a create acts in the workspace of the organization or
//! space it names; a list spans every workspace (narrowed by
//! `organization_id`).
//!
//! A workspace API key bound to one organization (its identity's
//! `organization_id`) reaches that organization only: whatever belongs to
//! another answers 404, its lists show that organization's, and it creates
//! no organizations.

use crate::BookingState;
use crate::schema::{bookings, meeting_spaces, organizations, space_groups};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use diesel::prelude::*;
use futures_util::future::LocalBoxFuture;
use identity::{Identity, PrincipalType, Scope};
use service_kit::ApiError;
use store::{DbConnection, StoreError};

/// The caller of a booking route: its identity, with the workspace filled in
/// when a system key named a resource of one.
pub struct Caller(Identity);

impl std::ops::Deref for Caller {
    type Target = Identity;
    fn deref(&self) -> &Identity {
        &self.0
    }
}

impl Caller {
    /// Whether this caller spans every workspace (a system key with none
    /// selected).
    pub fn spans_workspaces(&self) -> bool {
        self.0.principal_type == PrincipalType::System && self.0.workspace_id.is_none()
    }

    /// The workspace of a list once the caller holds `scope`: `None` when the
    /// list spans every workspace.
    pub fn list_workspace(&self, scope: &Scope) -> Result<Option<String>, ApiError> {
        if self.spans_workspaces() {
            self.0.require_scope(scope)?;
            return Ok(None);
        }
        crate::workspace_with(&self.0, scope).map(Some)
    }

    /// The organization a list is narrowed to: the one `requested`, or for an
    /// organization-bound key its own (another one is 404).
    pub fn list_organization(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        match (&self.0.organization_id, requested) {
            (Some(bound), Some(asked)) if bound != asked => {
                Err(ApiError::not_found("organization"))
            }
            (Some(bound), _) => Ok(Some(bound.clone())),
            (None, asked) => Ok(asked.map(str::to_owned)),
        }
    }

    /// The workspace a create acts in, once the caller holds `scope`: its own,
    /// or for a caller spanning workspaces that of `named` (an organization,
    /// space group or meeting space id, sent as `field`), 404 when there is
    /// none. An organization-bound key creates only within its organization.
    pub async fn workspace_for(
        &self,
        state: &BookingState,
        scope: &Scope,
        (field, named): (&str, Option<&str>),
    ) -> Result<String, ApiError> {
        let own = if self.spans_workspaces() {
            self.0.require_scope(scope)?;
            None
        } else {
            Some(crate::workspace_with(&self.0, scope)?)
        };
        if let (Some(own), None) = (&own, &self.0.organization_id) {
            return Ok(own.clone());
        }
        let named = named.filter(|n| !n.is_empty()).ok_or_else(|| {
            ApiError::validation(vec![service_kit::FieldError::new(
                field,
                "is required to tell the workspace (or send x-workspace-key)",
            )])
        })?;
        let named = named.to_owned();
        let (workspace, organization) = state
            .db
            .run(move |conn| owner_of(conn, &named))
            .await?
            .ok_or_else(|| ApiError::not_found("resource"))?;
        self.check_reach(own.as_deref(), &workspace, &organization)?;
        Ok(workspace)
    }

    /// 404 unless a resource of `(workspace, organization)` is within reach:
    /// the caller's own workspace (when it has one), and for an
    /// organization-bound key its organization.
    fn check_reach(
        &self,
        own: Option<&str>,
        workspace: &str,
        organization: &str,
    ) -> Result<(), ApiError> {
        let other_workspace = own.is_some_and(|own| own != workspace);
        let other_organization = self
            .0
            .organization_id
            .as_deref()
            .is_some_and(|bound| bound != organization);
        if other_workspace || other_organization {
            return Err(ApiError::not_found("resource"));
        }
        Ok(())
    }
}

/// The workspace and organization of the resource `id` names, by its prefix.
fn owner_of(conn: &mut DbConnection, id: &str) -> Result<Option<(String, String)>, StoreError> {
    use service_kit::ids::prefix;
    let kind = id.split_once('_').map(|(p, _)| p);
    Ok(match kind {
        Some(p) if p == prefix::ORGANIZATION => organizations::table
            .filter(organizations::id.eq(id))
            .select((organizations::workspace_id, organizations::id))
            .first(conn)
            .optional()?,
        Some(p) if p == prefix::MEETING_SPACE => meeting_spaces::table
            .filter(meeting_spaces::id.eq(id))
            .select((
                meeting_spaces::workspace_id,
                meeting_spaces::organization_id,
            ))
            .first(conn)
            .optional()?,
        Some(p) if p == prefix::SPACE_GROUP => space_groups::table
            .filter(space_groups::id.eq(id))
            .select((space_groups::workspace_id, space_groups::organization_id))
            .first(conn)
            .optional()?,
        Some(p) if p == prefix::BOOKING => bookings::table
            .filter(bookings::id.eq(id))
            .select((bookings::workspace_id, bookings::organization_id))
            .first(conn)
            .optional()?,
        _ => None,
    })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let identity = req.extensions().get::<Identity>().cloned();
        let named = req.match_info().get("id").map(str::to_owned);
        let state = req.app_data::<web::Data<BookingState>>().cloned();
        Box::pin(async move {
            let mut caller =
                Caller(identity.ok_or_else(|| ApiError::unauthorized("authentication required"))?);
            let bound = caller.0.organization_id.is_some();
            if let (true, Some(id), Some(state)) =
                (caller.spans_workspaces() || bound, named, state)
            {
                let (workspace, organization) = state
                    .db
                    .run(move |conn| owner_of(conn, &id))
                    .await?
                    .ok_or_else(|| ApiError::not_found("resource"))?;
                let own = caller.0.workspace_id.clone();
                caller.check_reach(own.as_deref(), &workspace, &organization)?;
                caller.0.workspace_id = Some(workspace);
            }
            Ok(caller)
        })
    }
}
