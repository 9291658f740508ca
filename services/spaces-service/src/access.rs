//! Who may reach which spaces. Workspace credentials (people, service
//! principals, workspace API keys) reach every space of their workspace; a
//! space key reaches its own space only; the operator's system key reaches
//! every workspace, or the one it selected. Reads need `spaces:read`, changes
//! `spaces:write`. Whatever is out of reach answers 404, as if it did not exist.

use identity::{Identity, PrincipalType, Scope};
use service_kit::ApiError;

/// The part of the data a request may touch. Every query filters by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The system key without a workspace: everything.
    All,
    /// Every space of one workspace.
    Workspace(String),
    /// One space (a space key).
    Space {
        workspace_id: String,
        space_id: String,
    },
}

impl Reach {
    /// The workspace every query filters by, when there is one.
    pub fn workspace(&self) -> Option<&str> {
        match self {
            Reach::All => None,
            Reach::Workspace(w)
            | Reach::Space {
                workspace_id: w, ..
            } => Some(w),
        }
    }

    /// The one space a space key reaches.
    pub fn space(&self) -> Option<&str> {
        match self {
            Reach::Space { space_id, .. } => Some(space_id),
            _ => None,
        }
    }

    /// Whether a space of `workspace_id` with id `space_id` is within reach.
    pub fn covers(&self, workspace_id: &str, space_id: &str) -> bool {
        self.workspace().is_none_or(|w| w == workspace_id)
            && self.space().is_none_or(|s| s == space_id)
    }

    /// The workspace new spaces are created in. A space key may not create
    /// spaces (403); the system key must have selected a workspace.
    pub fn workspace_for_new_spaces(&self) -> Result<String, ApiError> {
        match self {
            Reach::Workspace(w) => Ok(w.clone()),
            Reach::Space { .. } => Err(ApiError::forbidden("a space API key cannot create spaces")),
            Reach::All => Err(ApiError::forbidden(
                "no workspace selected (send x-workspace-key)",
            )),
        }
    }
}

/// What a request may touch, given the scope its action needs: 401 for an
/// anonymous caller, 403 without the scope or without a workspace.
pub fn reach(identity: &Identity, scope: &Scope) -> Result<Reach, ApiError> {
    identity.require_scope(scope)?;
    match identity.principal_type {
        PrincipalType::SpaceKey => match (&identity.workspace_id, &identity.space_id) {
            (Some(workspace_id), Some(space_id)) => Ok(Reach::Space {
                workspace_id: workspace_id.clone(),
                space_id: space_id.clone(),
            }),
            _ => Err(ApiError::forbidden("the space key names no space")),
        },
        PrincipalType::System => Ok(identity
            .workspace_id
            .clone()
            .map_or(Reach::All, Reach::Workspace)),
        PrincipalType::User | PrincipalType::Service | PrincipalType::ApiKey => {
            Ok(Reach::Workspace(identity.require_workspace()?.to_owned()))
        }
        PrincipalType::Gateway | PrincipalType::Anonymous => {
            Err(ApiError::forbidden("not allowed for this credential"))
        }
    }
}

pub fn readable(identity: &Identity) -> Result<Reach, ApiError> {
    reach(identity, &Scope::SPACES_READ)
}

pub fn writable(identity: &Identity) -> Result<Reach, ApiError> {
    reach(identity, &Scope::SPACES_WRITE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::ScopeSet;

    fn who(kind: PrincipalType, workspace: Option<&str>, space: Option<&str>) -> Identity {
        Identity {
            principal_id: "p".into(),
            principal_type: kind,
            workspace_id: workspace.map(str::to_owned),
            scopes: ScopeSet::parse("spaces:read spaces:write").unwrap(),
            space_id: space.map(str::to_owned),
        }
    }

    #[test]
    fn reach_by_credential() {
        let user = readable(&who(PrincipalType::User, Some("wrk_a"), None)).unwrap();
        assert!(user.covers("wrk_a", "spc_1") && !user.covers("wrk_b", "spc_1"));
        let key = readable(&who(PrincipalType::SpaceKey, Some("wrk_a"), Some("spc_1"))).unwrap();
        assert!(key.covers("wrk_a", "spc_1") && !key.covers("wrk_a", "spc_2"));
        assert!(key.workspace_for_new_spaces().is_err());
        let system = readable(&who(PrincipalType::System, None, None)).unwrap();
        assert!(system.covers("wrk_z", "spc_9"));
        assert_eq!(
            readable(&who(PrincipalType::User, None, None))
                .unwrap_err()
                .status
                .as_u16(),
            403
        );
        assert_eq!(
            readable(&Identity::anonymous())
                .unwrap_err()
                .status
                .as_u16(),
            401
        );
        let mut reader = who(PrincipalType::ApiKey, Some("wrk_a"), None);
        reader.scopes = ScopeSet::parse("spaces:read").unwrap();
        assert!(readable(&reader).is_ok());
        assert_eq!(writable(&reader).unwrap_err().status.as_u16(), 403);
    }
}
