//! People, workspaces and memberships, and the events that announce who
//! joins and leaves a workspace.
//!
//! # `member.added` and `member.removed`
//!
//! The events follow the set of a workspace's *active* members, so that a
//! consumer that applies them in order knows who belongs (the gateway honours
//! only active memberships). A person is added when an active membership
//! begins: their account's personal workspace is made at their first sign-in
//! (or when they are first invited anywhere), they create a workspace, they are
//! added by an admin (`POST /v1/auth/admin/users`, active at once: there is no
//! invitation to accept), or a deactivated membership is made active again. A
//! person is removed when an active membership ends: it is deactivated, or
//! deleted (`DELETE /v1/auth/admin/users/{id}`). Deleting a membership that
//! was already deactivated records nothing, as the deactivation did; a change
//! of role alone records nothing either.

use crate::AuthService;
use crate::schema::{memberships, roles, users, workspaces};
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::scopes::Catalog;
use identity::{Scope, ScopeSet};
use serde::Serialize;
use service_kit::cli::ServicePart;
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

    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    /// Owners and admins hold every scope of the deployment, its extra ones
    /// too (owners alone may transfer ownership, which is not a scope); members
    /// read and book; viewers read. "Read" is every `…:read` scope.
    pub fn scopes(self, catalog: &Catalog) -> ScopeSet {
        match self {
            Role::Owner | Role::Admin => catalog.all(),
            Role::Member => catalog
                .reads()
                .union(&[Scope::BOOKINGS_WRITE].into_iter().collect()),
            Role::Viewer => catalog.reads(),
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
/// a personal workspace they own; `true` when created now, in which case the
/// transaction has recorded their `member.added` for it.
pub fn find_or_create_user(
    conn: &mut DbConnection,
    email: &str,
    request_id: Option<&str>,
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
            .execute(conn)?;
        let member = Member {
            workspace_id: &workspace_id,
            user_id: &user.id,
            email,
            role: Role::Owner.as_str(),
        };
        record_member_event(conn, MemberEvent::Added, &member, request_id)
    });
    match created {
        Ok(()) => Ok((user, true)),
        // Two first sign-ins raced: the other one created the user (and its
        // event; this savepoint's went with the rest of it).
        Err(StoreError::UniqueViolation { .. }) => users::table
            .filter(users::email.eq(email))
            .first::<User>(conn)
            .map(|u| (u, false))
            .map_err(StoreError::from),
        Err(e) => Err(e),
    }
}

/// Which way a membership moved, by its name in the event catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberEvent {
    /// An active membership began (`member.added`).
    Added,
    /// An active membership ended (`member.removed`).
    Removed,
}

impl MemberEvent {
    pub fn event_type(self) -> &'static str {
        match self {
            MemberEvent::Added => "member.added",
            MemberEvent::Removed => "member.removed",
        }
    }
}

/// A membership as its events describe it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub workspace_id: &'a str,
    pub user_id: &'a str,
    pub email: &'a str,
    /// As stored: a built-in role, or a custom role's id (`rol_…`).
    pub role: &'a str,
}

/// Records `member.added` or `member.removed` in the outbox, inside the
/// transaction that makes the change; the caller nudges the relay after the
/// commit. `request_id` is captured before the transaction (the request's
/// task-local is not visible on the blocking thread that runs it).
///
/// The event's subject is the person (`usr_…`); its data is
/// `{workspace_id, user_id, email, role}`.
pub fn record_member_event(
    conn: &mut DbConnection,
    event: MemberEvent,
    member: &Member<'_>,
    request_id: Option<&str>,
) -> Result<(), StoreError> {
    let data = serde_json::json!({
        "workspace_id": member.workspace_id,
        "user_id": member.user_id,
        "email": member.email,
        "role": member.role,
    });
    let event = events::Event::new(
        AuthService::NAME,
        event.event_type(),
        member.user_id,
        data,
        request_id.map(str::to_owned),
    )
    .with_workspace(member.workspace_id);
    events::outbox::record(conn, &event)
}

/// A member's role in a workspace and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// As stored: a built-in role name, or a custom role id (`rol_…`).
    pub role: String,
    /// What a person reads: the built-in name, or the custom role's name.
    pub role_name: String,
    grants: Grants,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Grants {
    BuiltIn(Role),
    Custom(ScopeSet),
}

impl Granted {
    /// What the role grants in a deployment with `catalog`: a custom role's
    /// scopes that the deployment no longer knows (an extra scope taken out of
    /// the configuration) are not granted.
    pub fn scopes(&self, catalog: &Catalog) -> ScopeSet {
        match &self.grants {
            Grants::BuiltIn(role) => role.scopes(catalog),
            Grants::Custom(scopes) => scopes.intersection(&catalog.all()),
        }
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
            grants: Grants::BuiltIn(builtin),
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
        grants: Grants::Custom(ScopeSet::parse(&scopes).unwrap_or_default()),
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
        let catalog = Catalog::builtin();
        let scopes = |role: Role| role.scopes(&catalog);
        assert!(scopes(Role::Viewer).is_subset(&scopes(Role::Member)));
        assert!(scopes(Role::Member).is_subset(&scopes(Role::Admin)));
        assert_eq!(scopes(Role::Owner), ScopeSet::all());
        assert_eq!(scopes(Role::Admin), ScopeSet::all());
        assert!(scopes(Role::Member).contains(&Scope::BOOKINGS_WRITE));
        assert!(!scopes(Role::Viewer).contains(&Scope::BOOKINGS_WRITE));
        assert!(!scopes(Role::Member).contains(&Scope::KEYS_ADMIN));
        // Members and viewers read what is readable, gospace's data too.
        for role in [Role::Member, Role::Viewer] {
            assert!(scopes(role).contains(&Scope::WORKSPACE_READ));
            assert!(scopes(role).contains(&Scope::DATA_READ));
            assert!(!scopes(role).contains(&Scope::AGENTS_RUN));
        }
    }

    #[test]
    fn owners_and_admins_hold_the_extra_scopes() {
        let catalog = Catalog::with_extra(["reports:read", "reports:export"]).unwrap();
        let read = Scope::parse("reports:read").unwrap();
        let export = Scope::parse("reports:export").unwrap();
        for role in [Role::Owner, Role::Admin] {
            assert_eq!(role.scopes(&catalog), catalog.all());
            assert!(role.scopes(&catalog).contains(&export));
        }
        for role in [Role::Member, Role::Viewer] {
            assert!(role.scopes(&catalog).contains(&read));
            assert!(!role.scopes(&catalog).contains(&export));
        }
        // A custom role keeps only what the deployment still grants.
        let custom = Granted {
            role: "rol_1".into(),
            role_name: "reporter".into(),
            grants: Grants::Custom(ScopeSet::parse("reports:read bookings:read").unwrap()),
        };
        assert_eq!(custom.scopes(&catalog).len(), 2);
        assert_eq!(
            custom.scopes(&Catalog::builtin()).names(),
            vec!["bookings:read"]
        );
    }
}
