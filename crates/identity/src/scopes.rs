//! Scopes are `resource:action` strings. One catalog is shared by all services
//! ([`CATALOG`]); a deployment may add more ([`Catalog::with_extra`], auth-service's
//! `scopes.extra`).
//!
//! Who checks what: auth-service, which issues every credential, grants only
//! scopes of its [`Catalog`]. Everyone else carries scopes as they were issued:
//! [`Scope::parse`] accepts any well-formed `resource:action`, so that a scope a
//! deployment added passes through the gateway's tokens and identity tokens
//! unchanged, and a service that does not know it simply never requires it.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// Every scope the platform itself knows, with what it allows: Spaceport's own,
/// then gospace's documented ones (`data:*`, `agents:*`).
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
        "manage every workspace API key and service principal (without it, a caller manages only the API keys they created)",
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
    (
        "webhooks:read",
        "read webhook subscriptions and their deliveries",
    ),
    (
        "webhooks:write",
        "create, change and delete webhook subscriptions; send test events and retry deliveries",
    ),
    (
        "data:read",
        "gospace: read the workspace's data sources and records",
    ),
    (
        "data:write",
        "gospace: write the workspace's data sources and records",
    ),
    (
        "agents:read",
        "gospace: read agents, blueprints and their runs",
    ),
    ("agents:run", "gospace: run agents"),
];

/// The longest scope accepted, `resource:action` together.
pub const MAX_SCOPE_LEN: usize = 100;

/// A scope: a well-formed `resource:action` (lowercase letters, digits, `_` and
/// `-` on each side of one colon). Whether a deployment grants it is its
/// [`Catalog`]'s to say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(Cow<'static, str>);

impl Scope {
    pub const WORKSPACE_READ: Scope = Scope(Cow::Borrowed("workspace:read"));
    pub const WORKSPACE_ADMIN: Scope = Scope(Cow::Borrowed("workspace:admin"));
    pub const USERS_READ: Scope = Scope(Cow::Borrowed("users:read"));
    pub const USERS_ADMIN: Scope = Scope(Cow::Borrowed("users:admin"));
    pub const KEYS_ADMIN: Scope = Scope(Cow::Borrowed("keys:admin"));
    pub const ORGANIZATIONS_READ: Scope = Scope(Cow::Borrowed("organizations:read"));
    pub const ORGANIZATIONS_WRITE: Scope = Scope(Cow::Borrowed("organizations:write"));
    pub const BOOKINGS_READ: Scope = Scope(Cow::Borrowed("bookings:read"));
    pub const BOOKINGS_WRITE: Scope = Scope(Cow::Borrowed("bookings:write"));
    pub const SPACES_READ: Scope = Scope(Cow::Borrowed("spaces:read"));
    pub const SPACES_WRITE: Scope = Scope(Cow::Borrowed("spaces:write"));
    pub const WEBHOOKS_READ: Scope = Scope(Cow::Borrowed("webhooks:read"));
    pub const WEBHOOKS_WRITE: Scope = Scope(Cow::Borrowed("webhooks:write"));
    pub const DATA_READ: Scope = Scope(Cow::Borrowed("data:read"));
    pub const DATA_WRITE: Scope = Scope(Cow::Borrowed("data:write"));
    pub const AGENTS_READ: Scope = Scope(Cow::Borrowed("agents:read"));
    pub const AGENTS_RUN: Scope = Scope(Cow::Borrowed("agents:run"));

    /// `name` as a scope, if it is a well-formed `resource:action`; catalog or not.
    pub fn parse(name: &str) -> Option<Scope> {
        if let Some(known) = Self::builtin(name) {
            return Some(known);
        }
        well_formed(name).then(|| Scope(Cow::Owned(name.to_owned())))
    }

    /// The entry of the built-in [`CATALOG`] for `name`, if there is one.
    pub fn builtin(name: &str) -> Option<Scope> {
        CATALOG
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, _)| Scope(Cow::Borrowed(n)))
    }

    pub fn is_builtin(&self) -> bool {
        CATALOG.iter().any(|(n, _)| *n == self.as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `workspace` of `workspace:read`.
    pub fn resource(&self) -> &str {
        self.0.split_once(':').map_or("", |(r, _)| r)
    }

    /// `read` of `workspace:read`.
    pub fn action(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, a)| a)
    }

    /// The built-in catalog's scopes.
    pub fn all() -> impl Iterator<Item = Scope> {
        CATALOG.iter().map(|(n, _)| Scope(Cow::Borrowed(n)))
    }
}

fn well_formed(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    name.len() <= MAX_SCOPE_LEN
        && name
            .split_once(':')
            .is_some_and(|(resource, action)| part(resource) && part(action))
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A scope name that is not a well-formed `resource:action`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed scope `{0}` (expected resource:action in lowercase letters, digits, `_` or `-`)"
)]
pub struct MalformedScope(pub String);

/// A set of scopes. On the wire: a space-separated string (RFC 6749 §3.3) or a
/// list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    pub fn empty() -> Self {
        ScopeSet(BTreeSet::new())
    }

    /// The built-in catalog (a deployment's own may hold more: [`Catalog::all`]).
    pub fn all() -> Self {
        ScopeSet(Scope::all().collect())
    }

    /// Parses a space-separated list; any malformed name is an error.
    pub fn parse(text: &str) -> Result<Self, MalformedScope> {
        Self::from_names(text.split_ascii_whitespace())
    }

    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, MalformedScope> {
        names
            .into_iter()
            .map(|n| Scope::parse(n).ok_or_else(|| MalformedScope(n.to_owned())))
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

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.union(&other.0).cloned().collect())
    }

    /// The scopes of `self` that `other` lacks.
    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.difference(&other.0).cloned().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn names(&self) -> Vec<&str> {
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

/// The scopes a deployment grants: the built-in [`CATALOG`] and the extra ones
/// its configuration names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    extra: ScopeSet,
}

impl Catalog {
    /// The built-in catalog alone.
    pub fn builtin() -> Catalog {
        Catalog::default()
    }

    /// The built-in catalog and `extra` (built-in names among them change nothing).
    pub fn with_extra<'a>(
        extra: impl IntoIterator<Item = &'a str>,
    ) -> Result<Catalog, MalformedScope> {
        let extra = ScopeSet::from_names(extra)?;
        Ok(Catalog {
            extra: extra.iter().filter(|s| !s.is_builtin()).cloned().collect(),
        })
    }

    /// The configured scopes beyond the built-in catalog.
    pub fn extra(&self) -> &ScopeSet {
        &self.extra
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        scope.is_builtin() || self.extra.contains(scope)
    }

    /// Every scope of the deployment (what owners and admins hold).
    pub fn all(&self) -> ScopeSet {
        ScopeSet::all().union(&self.extra)
    }

    /// Every `…:read` scope of the deployment.
    pub fn reads(&self) -> ScopeSet {
        self.all()
            .iter()
            .filter(|s| s.action() == "read")
            .cloned()
            .collect()
    }

    /// The scopes of `set` the deployment does not grant.
    pub fn unknown(&self, set: &ScopeSet) -> ScopeSet {
        set.iter().filter(|s| !self.contains(s)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_space_separated_and_refuses_malformed() {
        let set = ScopeSet::parse("bookings:read  spaces:write bookings:read").unwrap();
        assert_eq!(set.names(), vec!["bookings:read", "spaces:write"]);
        assert_eq!(set.to_string(), "bookings:read spaces:write");
        // gospace's documented exchange.
        let gospace = ScopeSet::parse("workspace:read data:read agents:run").unwrap();
        assert!(gospace.iter().all(Scope::is_builtin));
        assert!(gospace.contains(&Scope::AGENTS_RUN));
        // Well-formed scopes outside the catalog are carried, not refused.
        let extra = ScopeSet::parse("reports:read").unwrap();
        assert!(!extra.iter().next().unwrap().is_builtin());
        for malformed in [
            "root",
            "a:b:c",
            ":read",
            "data:",
            "Data:Read",
            "data read",
            "data:réad",
            &format!("{}:read", "a".repeat(MAX_SCOPE_LEN)),
        ] {
            assert_eq!(
                ScopeSet::from_names([malformed]).unwrap_err(),
                MalformedScope(malformed.into()),
                "{malformed}"
            );
        }
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
        // A scope a deployment added survives a round trip (identity tokens).
        let carried: ScopeSet = serde_json::from_str(r#"["reports:read"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&carried).unwrap(),
            r#"["reports:read"]"#
        );
    }

    #[test]
    fn the_catalog_is_well_formed_and_unique() {
        let names: BTreeSet<&str> = CATALOG.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), CATALOG.len());
        for (name, meaning) in CATALOG {
            assert!(well_formed(name), "{name}");
            assert!(!meaning.is_empty());
            assert_eq!(Scope::parse(name), Scope::builtin(name));
        }
        for gospace in ["data:read", "data:write", "agents:read", "agents:run"] {
            assert!(Scope::builtin(gospace).is_some(), "{gospace}");
        }
    }

    #[test]
    fn a_deployment_catalog_adds_its_extra_scopes() {
        let builtin = Catalog::builtin();
        let reports = Scope::parse("reports:read").unwrap();
        assert!(!builtin.contains(&reports));
        assert_eq!(builtin.all(), ScopeSet::all());

        let catalog = Catalog::with_extra(["reports:read", "reports:export", "data:read"]).unwrap();
        assert!(catalog.contains(&reports));
        assert!(catalog.contains(&Scope::DATA_READ));
        assert_eq!(
            catalog.extra().names(),
            vec!["reports:export", "reports:read"]
        );
        assert!(ScopeSet::all().is_subset(&catalog.all()));
        assert_eq!(catalog.all().len(), CATALOG.len() + 2);
        assert!(catalog.reads().contains(&reports));
        assert!(catalog.reads().contains(&Scope::WORKSPACE_READ));
        assert!(!catalog.reads().contains(&Scope::BOOKINGS_WRITE));
        assert!(catalog.reads().iter().all(|s| s.action() == "read"));
        let asked = ScopeSet::parse("reports:read billing:read bookings:read").unwrap();
        assert_eq!(catalog.unknown(&asked).names(), vec!["billing:read"]);
        assert_eq!(
            Catalog::with_extra(["Reports"]).unwrap_err(),
            MalformedScope("Reports".into())
        );
    }
}
