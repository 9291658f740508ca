//! Which workspace a request acts in.
//!
//! Most credentials embed their workspace. `x-workspace-key` may name another
//! one only where that makes sense:
//! - a user token: the user must be a member of the named workspace (looked up
//!   at auth-service, cached in the shared cache); the request then carries the
//!   scopes of the user's role there;
//! - a system key: any workspace, no look-up;
//! - a credential bound to one workspace (service-principal token, API key,
//!   space key) naming another: 403.

use crate::admissions::{Admission, now_secs};
use crate::authn::Authenticator;
use identity::{Identity, PrincipalType, ScopeSet};
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use std::sync::Arc;
use std::time::Duration;

/// auth-service's answer about a membership, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Membership {
    member: bool,
    #[serde(default)]
    scopes: Option<ScopeSet>,
    /// When the answer was fetched (unix seconds): a removal published after it
    /// makes it stale.
    #[serde(default)]
    fetched_at: u64,
}

/// Whether `value` looks like a workspace id (`wrk_…`), so that garbage costs
/// no look-up.
fn is_workspace_id(value: &str) -> bool {
    value.strip_prefix("wrk_").is_some_and(|id| {
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

fn cache_key(workspace_id: &str, user_id: &str) -> String {
    format!("membership:{workspace_id}:{user_id}")
}

impl Authenticator {
    /// The identity acting in the workspace `requested` names (the value of
    /// `x-workspace-key`), or why it may not.
    pub async fn select_workspace(
        &self,
        admission: Arc<Admission>,
        requested: Option<&str>,
    ) -> Result<Arc<Admission>, ApiError> {
        let Some(requested) = requested else {
            return Ok(admission);
        };
        if admission.identity.workspace_id.as_deref() == Some(requested) {
            return Ok(admission);
        }
        // Read before the membership is looked up: a revocation meanwhile
        // leaves what is remembered due for a check.
        let revocations = self.revocation_count();
        let user = &admission.identity.principal_id;
        if let Some(acting) = admission.acting_in(requested, revocations, |fetched_at| {
            self.membership_changed_since(requested, user, fetched_at)
        }) {
            self.recalled();
            return Ok(acting);
        }
        let (identity, lifetime) = self.act_in(admission.identity.clone(), requested).await?;
        let acting = Admission::new(identity);
        if let Some(lifetime) = lifetime {
            admission.remember_acting(requested, acting.clone(), lifetime, revocations);
        }
        Ok(acting)
    }

    /// The identity acting in `requested`, and how long it may be remembered:
    /// `(fetched_at, good_until)` of the membership answer it came from.
    /// `None` for a system key: its admission is made for each request (a
    /// digest compared), so there is nothing to remember it with.
    async fn act_in(
        &self,
        identity: Identity,
        requested: &str,
    ) -> Result<(Identity, Option<(u64, u64)>), ApiError> {
        if !is_workspace_id(requested) {
            return Err(ApiError::bad_request(
                "x-workspace-key must be a workspace id (wrk_…)",
            ));
        }
        match identity.principal_type {
            PrincipalType::Anonymous => Err(crate::authn::unauthorized("authentication required")),
            // Any workspace.
            PrincipalType::System => Ok((
                Identity {
                    workspace_id: Some(requested.to_owned()),
                    ..identity
                },
                None,
            )),
            PrincipalType::User => {
                let membership = self.membership(requested, &identity.principal_id).await?;
                match membership {
                    Membership {
                        member: true,
                        scopes: Some(scopes),
                        fetched_at,
                    } => Ok((
                        Identity {
                            workspace_id: Some(requested.to_owned()),
                            scopes,
                            ..identity
                        },
                        Some((
                            fetched_at,
                            fetched_at.saturating_add(self.config().membership_cache_secs),
                        )),
                    )),
                    _ => Err(ApiError::forbidden("not a member of that workspace")),
                }
            }
            _ => Err(ApiError::forbidden(
                "the credential belongs to another workspace",
            )),
        }
    }

    async fn membership(&self, workspace_id: &str, user_id: &str) -> Result<Membership, ApiError> {
        let key = cache_key(workspace_id, user_id);
        if let Ok(Some(bytes)) = self.cache.get(&key).await
            && let Ok(cached) = serde_json::from_slice::<Membership>(&bytes)
            && !self.membership_changed_since(workspace_id, user_id, cached.fetched_at)
        {
            self.count("membership", "hit");
            return Ok(cached);
        }
        self.count("membership", "miss");
        let unavailable = || {
            ApiError::service_unavailable("memberships cannot be checked right now")
                .with_retry_after(1)
        };
        let mut membership: Membership = self
            .ask_internal(
                &self.auth,
                "/internal/memberships/lookup",
                "auth-service",
                &serde_json::json!({ "user_id": user_id, "workspace_id": workspace_id }),
            )
            .await
            .ok_or_else(unavailable)?;
        membership.fetched_at = now_secs();
        let ttl = if membership.member {
            self.config().membership_cache_secs
        } else {
            self.config().api_key_negative_cache_secs
        };
        if let Ok(bytes) = serde_json::to_vec(&membership) {
            let _ = self
                .cache
                .set(&key, &bytes, Some(Duration::from_secs(ttl.max(1))))
                .await;
        }
        Ok(membership)
    }

    /// Drops a cached look-up after a membership changed (every gateway does it
    /// on the revocation bus; the first one wins, the rest are no-ops).
    pub(crate) async fn forget_membership(&self, workspace_id: &str, user_id: &str) {
        let _ = self.cache.delete(&cache_key(workspace_id, user_id)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::is_workspace_id;

    #[test]
    fn workspace_ids() {
        assert!(is_workspace_id("wrk_01JC0000000000000000000000"));
        for bad in [
            "",
            "wrk_",
            "wrk_a-b",
            "org_01JC0000000000000000000000",
            "wrk_01JC00000000000000000000/0",
        ] {
            assert!(!is_workspace_id(bad), "{bad}");
        }
    }
}
