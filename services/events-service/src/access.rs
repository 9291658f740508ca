//! Whose subscriptions a caller reaches: those of the workspace its identity
//! acts in (a system key names one with `x-workspace-key`), and for a key
//! bound to one organization, only that organization's SpaceOS subscriptions.
//! Reading needs `webhooks:read`, changing `webhooks:write`.

use identity::{Identity, Scope};
use service_kit::ApiError;

/// What a caller reaches.
#[derive(Debug, Clone)]
pub struct Reach {
    pub workspace_id: String,
    /// A key bound to one SpaceOS organization reaches that one only.
    pub organization_id: Option<String>,
}

impl Reach {
    /// 401 for an anonymous caller, 403 without `scope` or without a
    /// workspace.
    pub fn of(identity: &Identity, scope: &Scope) -> Result<Reach, ApiError> {
        identity.require_scope(scope)?;
        Ok(Reach {
            workspace_id: identity.require_workspace()?.to_owned(),
            organization_id: identity.organization_id.clone(),
        })
    }

    /// As [`Reach::of`], for the gospace routes, whose subscriptions span the
    /// workspace: a key bound to one organization is refused (403).
    pub fn workspace_wide(identity: &Identity, scope: &Scope) -> Result<Reach, ApiError> {
        let reach = Reach::of(identity, scope)?;
        if reach.organization_id.is_some() {
            return Err(ApiError::forbidden(
                "a key bound to an organization reaches that organization's SpaceOS webhooks only",
            ));
        }
        Ok(reach)
    }

    pub fn read(identity: &Identity) -> Result<Reach, ApiError> {
        Reach::of(identity, &Scope::WEBHOOKS_READ)
    }

    pub fn write(identity: &Identity) -> Result<Reach, ApiError> {
        Reach::of(identity, &Scope::WEBHOOKS_WRITE)
    }

    /// The organization a SpaceOS request names, checked against the reach:
    /// another organization than a bound key's is 404, as if it did not exist.
    pub fn organization(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        match (&self.organization_id, requested) {
            (Some(bound), Some(asked)) if bound != asked => {
                Err(ApiError::not_found("organization"))
            }
            (Some(bound), _) => Ok(Some(bound.clone())),
            (None, asked) => Ok(asked.map(str::to_owned)),
        }
    }
}
