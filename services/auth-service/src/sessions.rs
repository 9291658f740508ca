//! Sign-in sessions: families of refresh tokens. Each use rotates the token;
//! presenting a token that was already used means it leaked, so the whole family
//! is revoked (and with it every access token derived from it).

use crate::schema::refresh_tokens;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use store::{DbConnection, StoreError};

const TOKEN_PREFIX: &str = "rt_";

/// A refresh token as handed to the client, with its session.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub family_id: String,
}

/// The session a refresh token belonged to, after a successful rotation.
#[derive(Debug, Clone)]
pub struct Session {
    pub family_id: String,
    pub user_id: String,
    pub workspace_id: Option<String>,
    pub scope: String,
}

#[derive(Debug)]
pub enum Rotation {
    Rotated(Session, Issued),
    /// An already-used or revoked token: the family is now revoked.
    Reused {
        family_id: String,
    },
    /// Unknown, expired or malformed.
    Invalid,
}

fn hash(token: &str) -> String {
    crate::secrets::hex(&Sha256::digest(token.as_bytes()))
}

#[allow(clippy::too_many_arguments)]
fn insert(
    conn: &mut DbConnection,
    family_id: &str,
    user_id: &str,
    workspace_id: Option<&str>,
    scope: &str,
    ttl: chrono::Duration,
    now: NaiveDateTime,
) -> Result<Issued, StoreError> {
    let token = crate::secrets::random_credential(TOKEN_PREFIX);
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::id.eq(service_kit::ids::new_id("rft")),
            refresh_tokens::family_id.eq(family_id),
            refresh_tokens::user_id.eq(user_id),
            refresh_tokens::workspace_id.eq(workspace_id),
            refresh_tokens::token_hash.eq(hash(&token)),
            refresh_tokens::scope.eq(scope),
            refresh_tokens::created_at.eq(now),
            refresh_tokens::expires_at.eq(now + ttl),
        ))
        .execute(conn)?;
    Ok(Issued {
        token,
        family_id: family_id.to_owned(),
    })
}

/// Starts a session for a fresh sign-in.
pub fn start(
    conn: &mut DbConnection,
    user_id: &str,
    workspace_id: Option<&str>,
    scope: &str,
    ttl: chrono::Duration,
) -> Result<Issued, StoreError> {
    let family = service_kit::ids::new_id("ses");
    insert(
        conn,
        &family,
        user_id,
        workspace_id,
        scope,
        ttl,
        Utc::now().naive_utc(),
    )
}

/// Exchanges a refresh token for its successor. Call inside a transaction: the
/// conditional update lets exactly one of two concurrent uses win.
/// The user a (not yet used) refresh token belongs to, without consuming it.
pub fn user_of(conn: &mut DbConnection, presented: &str) -> Result<Option<String>, StoreError> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash(presented)))
        .select(refresh_tokens::user_id)
        .first::<String>(conn)
        .optional()
        .map_err(StoreError::from)
}

/// Where the successor of a refresh token acts: `None` keeps the session's
/// workspace and scopes; `Some((workspace, scope))` moves it.
pub type Switch<'a> = Option<(&'a str, &'a str)>;

pub fn rotate(
    conn: &mut DbConnection,
    presented: &str,
    ttl: chrono::Duration,
    switch: Switch<'_>,
) -> Result<Rotation, StoreError> {
    if !presented.starts_with(TOKEN_PREFIX) || presented.len() > 128 {
        return Ok(Rotation::Invalid);
    }
    let now = Utc::now().naive_utc();
    let token_hash = hash(presented);
    let claimed = diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(&token_hash))
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::revoked_at.is_null())
            .filter(refresh_tokens::expires_at.gt(now)),
    )
    .set(refresh_tokens::used_at.eq(now))
    .execute(conn)?;
    let row = refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(&token_hash))
        .select((
            refresh_tokens::family_id,
            refresh_tokens::user_id,
            refresh_tokens::workspace_id,
            refresh_tokens::scope,
            refresh_tokens::used_at,
            refresh_tokens::revoked_at,
            refresh_tokens::expires_at,
        ))
        .first::<(
            String,
            String,
            Option<String>,
            String,
            Option<NaiveDateTime>,
            Option<NaiveDateTime>,
            NaiveDateTime,
        )>(conn)
        .optional()?;
    let Some((family_id, user_id, workspace_id, scope, _used, _revoked, expires_at)) = row else {
        return Ok(Rotation::Invalid);
    };
    if claimed == 1 {
        let (workspace_id, scope) = match switch {
            Some((workspace, scope)) => (Some(workspace.to_owned()), scope.to_owned()),
            None => (workspace_id, scope),
        };
        let issued = insert(
            conn,
            &family_id,
            &user_id,
            workspace_id.as_deref(),
            &scope,
            ttl,
            now,
        )?;
        return Ok(Rotation::Rotated(
            Session {
                family_id,
                user_id,
                workspace_id,
                scope,
            },
            issued,
        ));
    }
    if expires_at <= now {
        return Ok(Rotation::Invalid);
    }
    // Used or revoked before: treat as stolen.
    revoke_family(conn, &family_id)?;
    Ok(Rotation::Reused { family_id })
}

/// Revokes every token of a session; returns how many were still live.
pub fn revoke_family(conn: &mut DbConnection, family_id: &str) -> Result<usize, StoreError> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Utc::now().naive_utc()))
    .execute(conn)
    .map_err(StoreError::from)
}

/// Whether a session has been revoked (logout, reuse detection).
pub fn family_revoked(conn: &mut DbConnection, family_id: &str) -> Result<bool, StoreError> {
    let revoked: i64 = refresh_tokens::table
        .filter(refresh_tokens::family_id.eq(family_id))
        .filter(refresh_tokens::revoked_at.is_not_null())
        .count()
        .get_result(conn)?;
    Ok(revoked > 0)
}

/// A refresh token as introspection reports it.
#[derive(Debug, Clone)]
pub struct RefreshState {
    pub user_id: String,
    pub scope: String,
    pub expires_at: NaiveDateTime,
    /// Not used, not revoked, not expired.
    pub live: bool,
}

pub fn describe(
    conn: &mut DbConnection,
    presented: &str,
) -> Result<Option<RefreshState>, StoreError> {
    let now = Utc::now().naive_utc();
    type Row = (
        String,
        String,
        NaiveDateTime,
        Option<NaiveDateTime>,
        Option<NaiveDateTime>,
    );
    let row = refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash(presented)))
        .select((
            refresh_tokens::user_id,
            refresh_tokens::scope,
            refresh_tokens::expires_at,
            refresh_tokens::used_at,
            refresh_tokens::revoked_at,
        ))
        .first::<Row>(conn)
        .optional()?;
    Ok(
        row.map(|(user_id, scope, expires_at, used, revoked)| RefreshState {
            live: used.is_none() && revoked.is_none() && expires_at > now,
            user_id,
            scope,
            expires_at,
        }),
    )
}

/// The session a refresh token belongs to, if the token is known.
pub fn family_of(conn: &mut DbConnection, presented: &str) -> Result<Option<String>, StoreError> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash(presented)))
        .select(refresh_tokens::family_id)
        .first::<String>(conn)
        .optional()
        .map_err(StoreError::from)
}
