//! Connecting to Redis the one way every part does (the cache and the event
//! stream): the same timeouts and reconnect bounds, and a URL that never shows
//! its password in an error or a log.

use std::time::Duration;

use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Long enough to ride out a busy server, short enough that a request waiting
/// on Redis fails (503) rather than hangs when it is gone.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect attempts per outage before commands start failing fast; the next
/// command starts a new round, so this only bounds how long a caller waits
/// (also at start-up).
pub const CONNECTION_RETRIES: usize = 3;

/// Why a connection could not be made; the text names the URL with its
/// credentials blanked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    InvalidUrl(String),
    Unreachable(String),
}

/// A client and its shared, self-reconnecting connection for `url`.
pub async fn connect(url: &str) -> Result<(Client, ConnectionManager), ConnectError> {
    let redacted = redact(url);
    let password = password_of(url);
    let scrubbed = |e: redis::RedisError| scrub(password.as_deref(), &e.to_string());
    let client = Client::open(url)
        .map_err(|e| ConnectError::InvalidUrl(format!("{redacted}: {}", scrubbed(e))))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_number_of_retries(CONNECTION_RETRIES);
    let connection = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|e| {
            ConnectError::Unreachable(format!("cannot connect to {redacted}: {}", scrubbed(e)))
        })?;
    Ok((client, connection))
}

/// `scheme://host:port/db` with any user and password replaced, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redis url>".into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}{path}", &authority[at + 1..]),
        None => url.to_owned(),
    }
}

/// The password of `url`, if it has one.
pub fn password_of(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    (!password.is_empty()).then(|| password.to_owned())
}

/// Belt and braces: should an error text ever quote the URL, blank out the
/// password.
pub fn scrub(password: Option<&str>, text: &str) -> String {
    match password {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact("redis://user:s3cret@host:6379/2"),
            "redis://***@host:6379/2"
        );
        assert_eq!(redact("rediss://:s3cret@host"), "rediss://***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("no scheme"), "<redis url>");
        assert_eq!(
            password_of("redis://user:s3cret@host/0").as_deref(),
            Some("s3cret")
        );
        assert_eq!(password_of("redis://user@host/0"), Some("user".into()));
        assert_eq!(password_of("redis://host/0"), None);
        assert_eq!(scrub(Some("s3cret"), "bad s3cret here"), "bad *** here");
        assert_eq!(scrub(None, "plain"), "plain");
    }
}
