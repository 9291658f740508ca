//! Who may reach which spaces. Workspace credentials (people, service
//! principals, workspace API keys) reach every space of their workspace; a
//! space key reaches its own space only, an account key every space of its
//! workspace; the operator's system key reaches every workspace, or the one it
//! selected. Reads need `spaces:read`, changes `spaces:write`. Whatever is out
//! of reach answers 404, as if it did not exist.
//!
//! The gateway describes both kinds of `sk_` key the same way (a space key,
//! with the space it was minted for); which kind a key is, spaces-service
//! itself knows ([`crate::space_keys::kind_of`]).

use crate::SpacesState;
use crate::space_keys::{self, KeyType};
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

/// Who is asking, as far as spaces are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub reach: Reach,
    /// The kind of `sk_` key the credential is, if it is one.
    pub key: Option<KeyType>,
    /// A workspace admin (or the operator): holds `keys:admin`, and is no
    /// space API key.
    pub admin: bool,
}

/// What a request may touch, given the scope its action needs and, for a
/// space API key, which kind it is: 401 for an anonymous caller, 403 without
/// the scope or without a workspace.
pub fn reach(identity: &Identity, scope: &Scope, key: Option<KeyType>) -> Result<Reach, ApiError> {
    identity.require_scope(scope)?;
    match identity.principal_type {
        PrincipalType::SpaceKey => match (&identity.workspace_id, &identity.space_id, key) {
            (Some(workspace_id), _, Some(KeyType::Account)) => {
                Ok(Reach::Workspace(workspace_id.clone()))
            }
            (Some(workspace_id), Some(space_id), _) => Ok(Reach::Space {
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

/// The caller, with the scope its action needs. A space API key's kind is
/// looked up (in memory after the first time); a key that no longer exists
/// is refused (401).
pub async fn caller(
    state: &SpacesState,
    identity: &Identity,
    scope: &Scope,
) -> Result<Caller, ApiError> {
    // The scope first: an anonymous caller costs no look-up.
    identity.require_scope(scope)?;
    let key = match identity.principal_type {
        PrincipalType::SpaceKey => Some(space_keys::kind_of(state, identity).await?),
        _ => None,
    };
    Ok(Caller {
        reach: reach(identity, scope, key)?,
        key,
        admin: key.is_none() && identity.scopes.contains(&Scope::KEYS_ADMIN),
    })
}

pub async fn readable(state: &SpacesState, identity: &Identity) -> Result<Reach, ApiError> {
    Ok(caller(state, identity, &Scope::SPACES_READ).await?.reach)
}

pub async fn writable(state: &SpacesState, identity: &Identity) -> Result<Reach, ApiError> {
    Ok(caller(state, identity, &Scope::SPACES_WRITE).await?.reach)
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
            organization_id: None,
        }
    }

    fn readable(identity: &Identity, key: Option<KeyType>) -> Result<Reach, ApiError> {
        reach(identity, &Scope::SPACES_READ, key)
    }

    #[test]
    fn reach_by_credential() {
        let user = readable(&who(PrincipalType::User, Some("wrk_a"), None), None).unwrap();
        assert!(user.covers("wrk_a", "spc_1") && !user.covers("wrk_b", "spc_1"));
        let sk = who(PrincipalType::SpaceKey, Some("wrk_a"), Some("spc_1"));
        let key = readable(&sk, Some(KeyType::Space)).unwrap();
        assert!(key.covers("wrk_a", "spc_1") && !key.covers("wrk_a", "spc_2"));
        assert!(key.workspace_for_new_spaces().is_err());
        let account = readable(&sk, Some(KeyType::Account)).unwrap();
        assert!(account.covers("wrk_a", "spc_2") && !account.covers("wrk_b", "spc_1"));
        assert_eq!(account.workspace_for_new_spaces().unwrap(), "wrk_a");
        let system = readable(&who(PrincipalType::System, None, None), None).unwrap();
        assert!(system.covers("wrk_z", "spc_9"));
        assert_eq!(
            readable(&who(PrincipalType::User, None, None), None)
                .unwrap_err()
                .status
                .as_u16(),
            403
        );
        assert_eq!(
            readable(&Identity::anonymous(), None)
                .unwrap_err()
                .status
                .as_u16(),
            401
        );
        let mut reader = who(PrincipalType::ApiKey, Some("wrk_a"), None);
        reader.scopes = ScopeSet::parse("spaces:read").unwrap();
        assert!(readable(&reader, None).is_ok());
        assert_eq!(
            reach(&reader, &Scope::SPACES_WRITE, None)
                .unwrap_err()
                .status
                .as_u16(),
            403
        );
    }
}
