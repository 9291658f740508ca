//! Scopes are `resource:action` strings from one catalog shared by all services.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Every scope the platform knows, with what it allows.
pub const CATALOG: &[(&str, &str)] = &[
    ("workspace:read", "read the workspace and its settings"),
    ("workspace:admin", "change workspace settings"),
    ("users:read", "list members and roles of the workspace"),
    (
        "users:admin",
        "invite, change and remove members; manage custom roles",
    ),
    (
        "keys:admin",
        "create and revoke workspace API keys and service principals",
    ),
    (
        "organizations:read",
        "read organizations, space groups and meeting spaces",
    ),
    (
        "organizations:write",
        "create and change organizations, space groups and meeting spaces",
    ),
    ("bookings:read", "read bookings"),
    (
        "bookings:write",
        "create, change, cancel and check in bookings",
    ),
    (
        "spaces:read",
        "read content spaces, their settings and upload configs",
    ),
    (
        "spaces:write",
        "create and change content spaces, upload configs and space API keys",
    ),
];

/// A scope from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(&'static str);

impl Scope {
    pub const WORKSPACE_READ: Scope = Scope("workspace:read");
    pub const WORKSPACE_ADMIN: Scope = Scope("workspace:admin");
    pub const USERS_READ: Scope = Scope("users:read");
    pub const USERS_ADMIN: Scope = Scope("users:admin");
    pub const KEYS_ADMIN: Scope = Scope("keys:admin");
    pub const ORGANIZATIONS_READ: Scope = Scope("organizations:read");
    pub const ORGANIZATIONS_WRITE: Scope = Scope("organizations:write");
    pub const BOOKINGS_READ: Scope = Scope("bookings:read");
    pub const BOOKINGS_WRITE: Scope = Scope("bookings:write");
    pub const SPACES_READ: Scope = Scope("spaces:read");
    pub const SPACES_WRITE: Scope = Scope("spaces:write");

    /// The catalog entry for `name`, if there is one.
    pub fn parse(name: &str) -> Option<Scope> {
        CATALOG
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, _)| Scope(n))
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }

    pub fn all() -> impl Iterator<Item = Scope> {
        CATALOG.iter().map(|(n, _)| Scope(n))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A scope name outside the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

/// A set of catalog scopes. On the wire: a space-separated string (RFC 6749 §3.3)
/// or a list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    pub fn empty() -> Self {
        ScopeSet(BTreeSet::new())
    }

    pub fn all() -> Self {
        ScopeSet(Scope::all().collect())
    }

    /// Parses a space-separated list; any unknown name is an error.
    pub fn parse(text: &str) -> Result<Self, UnknownScope> {
        Self::from_names(text.split_ascii_whitespace())
    }

    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, UnknownScope> {
        names
            .into_iter()
            .map(|n| Scope::parse(n).ok_or_else(|| UnknownScope(n.to_owned())))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(ScopeSet)
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, of: &ScopeSet) -> bool {
        self.0.is_subset(&of.0)
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(Scope::as_str).collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        ScopeSet(iter.into_iter().collect())
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(" "))
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Scope::as_str))
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            List(Vec<String>),
        }
        match Wire::deserialize(d)? {
            Wire::Text(text) => ScopeSet::parse(&text),
            Wire::List(list) => ScopeSet::from_names(list.iter().map(String::as_str)),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_space_separated_and_refuses_unknown() {
        let set = ScopeSet::parse("bookings:read  spaces:write bookings:read").unwrap();
        assert_eq!(set.names(), vec!["bookings:read", "spaces:write"]);
        assert_eq!(set.to_string(), "bookings:read spaces:write");
        assert_eq!(
            ScopeSet::parse("workspace:read data:read").unwrap_err(),
            UnknownScope("data:read".into())
        );
        assert!(ScopeSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn subset_and_serde_forms() {
        let small = ScopeSet::parse("bookings:read").unwrap();
        assert!(small.is_subset(&ScopeSet::all()));
        assert!(!ScopeSet::all().is_subset(&small));
        let from_text: ScopeSet = serde_json::from_str(r#""spaces:read bookings:read""#).unwrap();
        let from_list: ScopeSet =
            serde_json::from_str(r#"["bookings:read","spaces:read"]"#).unwrap();
        assert_eq!(from_text, from_list);
        assert_eq!(
            serde_json::to_string(&from_list).unwrap(),
            r#"["bookings:read","spaces:read"]"#
        );
        assert!(serde_json::from_str::<ScopeSet>(r#"["root"]"#).is_err());
    }
}
