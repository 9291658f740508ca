//! Revocations, published on the cache bus so every gateway stops honouring a
//! credential within a second of its revocation.

use serde::{Deserialize, Serialize};

/// The channel every service publishes to and every gateway listens on.
pub const CHANNEL: &str = "revocations";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// A sign-in session: its refresh tokens and the access tokens carrying its `sid`.
    Session { id: String },
    /// A workspace API key.
    ApiKey { id: String },
    /// A space API key.
    SpaceKey { id: String },
    /// A user's membership of a workspace.
    Membership {
        workspace_id: String,
        user_id: String,
    },
}

impl Revocation {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("revocations serialize")
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Revocation> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        let r = Revocation::Session { id: "ses_1".into() };
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            r#"{"kind":"session","id":"ses_1"}"#
        );
        assert_eq!(Revocation::from_bytes(&r.to_bytes()), Some(r));
        assert_eq!(Revocation::from_bytes(b"{\"kind\":\"bogus\"}"), None);
    }
}
