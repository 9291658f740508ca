//! People, workspaces and memberships.

use crate::schema::{memberships, roles, users, workspaces};
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::{Scope, ScopeSet};
use serde::Serialize;
use service_kit::ids::{self, prefix};
use store::{DbConnection, StoreError};

/// The built-in roles and what each may do (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// Owners and admins hold every scope (owners alone may transfer ownership,
    /// which is not a scope); members read and book; viewers read.
    pub fn scopes(self) -> ScopeSet {
        let read = [
            Scope::WORKSPACE_READ,
            Scope::USERS_READ,
            Scope::ORGANIZATIONS_READ,
            Scope::BOOKINGS_READ,
            Scope::SPACES_READ,
        ];
        match self {
            Role::Owner | Role::Admin => ScopeSet::all(),
            Role::Member => read.into_iter().chain([Scope::BOOKINGS_WRITE]).collect(),
            Role::Viewer => read.into_iter().collect(),
        }
    }
}

#[derive(Queryable, Insertable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Lowercased, trimmed, and plausibly an address: `local@domain.tld`, no spaces
/// or control characters, within RFC 5321's length limits.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.rsplit_once('@')?;
    let ok = email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && email
            .chars()
            .all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control()))
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    ok.then_some(email)
}

/// The user with this (normalized) email, created on first sign-in together with
/// a personal workspace they own.
pub fn find_or_create_user(
    conn: &mut DbConnection,
    email: &str,
) -> Result<(User, bool), StoreError> {
    if let Some(user) = users::table
        .filter(users::email.eq(email))
        .first::<User>(conn)
        .optional()?
    {
        return Ok((user, false));
    }
    let now = Utc::now().naive_utc();
    let user = User {
        id: ids::new_id(prefix::USER),
        email: email.to_owned(),
        name: String::new(),
        created_at: now,
        updated_at: now,
    };
    let workspace_id = ids::new_id(prefix::WORKSPACE);
    let created = conn.transaction(|conn| {
        diesel::insert_into(users::table)
            .values(&user)
            .execute(conn)?;
        diesel::insert_into(workspaces::table)
            .values((
                workspaces::id.eq(&workspace_id),
                workspaces::name.eq(format!("{email}'s workspace")),
                workspaces::created_at.eq(now),
                workspaces::updated_at.eq(now),
            ))
            .execute(conn)?;
        diesel::insert_into(memberships::table)
            .values((
                memberships::workspace_id.eq(&workspace_id),
                memberships::user_id.eq(&user.id),
                memberships::role.eq(Role::Owner.as_str()),
                memberships::status.eq("active"),
                memberships::created_at.eq(now),
                memberships::updated_at.eq(now),
            ))
            .execute(conn)
    });
    match created.map_err(StoreError::from) {
        Ok(_) => Ok((user, true)),
        // Two first sign-ins raced: the other one created the user.
        Err(StoreError::UniqueViolation { .. }) => users::table
            .filter(users::email.eq(email))
            .first::<User>(conn)
            .map(|u| (u, false))
            .map_err(StoreError::from),
        Err(e) => Err(e),
    }
}

/// A member's role in a workspace and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// As stored: a built-in role name, or a custom role id (`rol_…`).
    pub role: String,
    /// What a person reads: the built-in name, or the custom role's name.
    pub role_name: String,
    scopes: ScopeSet,
}

impl Granted {
    pub fn scopes(&self) -> ScopeSet {
        self.scopes.clone()
    }

    pub fn is_owner(&self) -> bool {
        self.role == Role::Owner.as_str()
    }
}

/// What a stored role grants in a workspace; `None` for a role that does not
/// exist there (a custom role of another workspace, or a deleted one).
pub fn resolve_role(
    conn: &mut DbConnection,
    workspace_id: &str,
    role: &str,
) -> Result<Option<Granted>, StoreError> {
    if let Some(builtin) = Role::parse(role) {
        return Ok(Some(Granted {
            role: role.to_owned(),
            role_name: role.to_owned(),
            scopes: builtin.scopes(),
        }));
    }
    let custom = roles::table
        .filter(roles::id.eq(role))
        .filter(roles::workspace_id.eq(workspace_id))
        .select((roles::name, roles::scopes))
        .first::<(String, String)>(conn)
        .optional()?;
    Ok(custom.map(|(name, scopes)| Granted {
        role: role.to_owned(),
        role_name: name,
        scopes: ScopeSet::parse(&scopes).unwrap_or_default(),
    }))
}

/// The workspace a fresh sign-in acts in: the oldest active membership.
pub fn default_membership(
    conn: &mut DbConnection,
    user_id: &str,
) -> Result<Option<(String, Granted)>, StoreError> {
    let row = memberships::table
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::status.eq("active"))
        .order(memberships::created_at.asc())
        .select((memberships::workspace_id, memberships::role))
        .first::<(String, String)>(conn)
        .optional()?;
    match row {
        Some((workspace, role)) => {
            Ok(resolve_role(conn, &workspace, &role)?.map(|g| (workspace, g)))
        }
        None => Ok(None),
    }
}

/// The active role of a user in a workspace.
pub fn role_in(
    conn: &mut DbConnection,
    user_id: &str,
    workspace_id: &str,
) -> Result<Option<Granted>, StoreError> {
    let role = memberships::table
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::workspace_id.eq(workspace_id))
        .filter(memberships::status.eq("active"))
        .select(memberships::role)
        .first::<String>(conn)
        .optional()?;
    match role {
        Some(role) => resolve_role(conn, workspace_id, &role),
        None => Ok(None),
    }
}

pub fn user_by_id(conn: &mut DbConnection, user_id: &str) -> Result<Option<User>, StoreError> {
    users::table
        .find(user_id)
        .first::<User>(conn)
        .optional()
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_or_refused() {
        assert_eq!(
            normalize_email("  Ops@Example.COM "),
            Some("ops@example.com".into())
        );
        assert_eq!(
            normalize_email("a.b+tag@sub.example.org"),
            Some("a.b+tag@sub.example.org".into())
        );
        for bad in [
            "",
            "nobody",
            "a@b",
            "@example.com",
            "a@.com",
            "a@example..com",
            "a b@example.com",
            "a@exa mple.com",
            "a@example.com\r\nBcc: x@y.z",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
        assert_eq!(
            normalize_email(&format!("{}@example.com", "a".repeat(65))),
            None
        );
    }

    #[test]
    fn role_scopes_nest() {
        assert!(Role::Viewer.scopes().is_subset(&Role::Member.scopes()));
        assert!(Role::Member.scopes().is_subset(&Role::Admin.scopes()));
        assert_eq!(Role::Owner.scopes(), ScopeSet::all());
        assert!(Role::Member.scopes().contains(&Scope::BOOKINGS_WRITE));
        assert!(!Role::Viewer.scopes().contains(&Scope::BOOKINGS_WRITE));
        assert!(!Role::Member.scopes().contains(&Scope::KEYS_ADMIN));
    }
}
