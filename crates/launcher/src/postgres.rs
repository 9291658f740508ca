//! A throwaway PostgreSQL database.

use anyhow::{Context, Result, bail};
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::{PgConnection, sql_query};

/// `<prefix>_<random>` on the server of an administrative URL. It is dropped,
/// with any connection still open to it, when this value is dropped, so a
/// failed run leaves nothing behind either.
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
    server_version: String,
}

impl ScratchDatabase {
    /// `prefix`: lowercase letters, digits and underscores.
    pub fn create(admin_url: &str, prefix: &str) -> Result<ScratchDatabase> {
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!("database name prefix `{prefix}`: use lowercase letters, digits and _");
        }
        let mut conn = PgConnection::establish(admin_url)
            .with_context(|| format!("connecting to {}", redacted(admin_url)))?;
        let server_version = diesel::select(diesel::dsl::sql::<Text>(
            "current_setting('server_version')",
        ))
        .get_result::<String>(&mut conn)?;
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).context("reading random bytes")?;
        let name = format!(
            "{prefix}_{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let mut url = url::Url::parse(admin_url).context("the PostgreSQL URL is not a URL")?;
        url.set_path(&name);
        // The name is checked above (letters, digits, underscores): nothing to quote.
        sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .with_context(|| format!("creating database {name}"))?;
        Ok(ScratchDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url: url.into(),
            server_version,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `15.4 (Debian …)` and the like.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // FORCE (PostgreSQL 13+) ends the pooled connections of a service that
        // is still running.
        let dropped = PgConnection::establish(&self.admin_url)
            .map_err(anyhow::Error::from)
            .and_then(|mut conn| {
                sql_query(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .execute(&mut conn)
                .map_err(anyhow::Error::from)
            });
        if let Err(e) = dropped {
            eprintln!("warning: could not drop database {}: {e:#}", self.name);
        }
    }
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.into()
        }
        Err(_) => "the database URL".into(),
    }
}
