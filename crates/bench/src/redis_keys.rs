//! A run's share of a Redis server that others use too: a fresh key prefix,
//! and every key under it deleted at the end.

use anyhow::{Context, Result};
use std::time::Duration;

/// Deletes every Redis key under the run's prefix when dropped: declare it
/// before the processes that write there, so it goes after them.
pub struct RedisKeys {
    url: String,
    /// `spb<random>`: no other run or part uses it.
    prefix: String,
}

impl RedisKeys {
    /// A fresh prefix on the server at `url`.
    pub fn fresh(url: &str) -> Result<RedisKeys> {
        Ok(RedisKeys {
            url: url.to_owned(),
            prefix: format!("spb{}", random_hex(6)?),
        })
    }

    /// `spb<random>`, without a separator.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let deleted = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut conn| {
                let keys: Vec<String> = redis::cmd("SCAN")
                    .cursor_arg(0)
                    .arg("MATCH")
                    .arg(format!("{}:*", self.prefix))
                    .arg("COUNT")
                    .arg(1000)
                    .clone()
                    .iter::<String>(&mut conn)?
                    .collect::<Result<_, _>>()?;
                if keys.is_empty() {
                    return Ok(0);
                }
                redis::cmd("DEL").arg(&keys).query::<i64>(&mut conn)
            });
        if let Err(e) = deleted {
            eprintln!(
                "warning: could not delete the bench's Redis keys {}:*: {e}",
                self.prefix
            );
        }
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).context("reading random bytes")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The server's `redis_version`; fails when it cannot be reached.
pub async fn redis_version(url: &str) -> Result<String> {
    let client = redis::Client::open(url).context("the Redis URL")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to Redis at {url}"))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .context("INFO server")?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned())
}
