//! Redis Streams: `XADD`, consumer groups, `XREADGROUP`, `XACK`, `XAUTOCLAIM`,
//! `XINFO GROUPS` and `CONSUMERS`, `XGROUP DELCONSUMER`. Replies are read from
//! `redis::Value` by hand, so that the workspace's `redis` dependency needs no
//! `streams` feature, and both RESP2 (arrays) and RESP3 (maps) answers are
//! understood.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, RedisError, Value};

use super::{EVENT_FIELD, Lag, RawEntry, StreamError};
use cache::redis_url::{
    self, CONNECTION_TIMEOUT, ConnectError, RESPONSE_TIMEOUT, password_of, redact, scrub,
};

/// Idle blocking-read connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;
/// Removes consumer ARGV[2] from group ARGV[1] of stream KEYS[1] only while
/// it holds no pending entry: 1 when removed, 0 when it holds one.
const FORGET_CONSUMER: &str = r"
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
    return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
";
/// `XAUTOCLAIM` calls per `claim_stale`: each scans at most 10 × COUNT pending
/// entries, so this bounds the work when few of many pending entries are stale.
const MAX_CLAIM_ROUNDS: usize = 8;

pub(crate) struct RedisStream {
    client: Client,
    /// Shared by every non-blocking command.
    connection: ConnectionManager,
    /// A blocked `XREADGROUP` holds its connection until it returns, and Redis
    /// answers a connection's commands in order: on the shared connection it
    /// would stall every publish and ack behind it. Each blocking read takes a
    /// connection of its own from here (or opens one) and puts it back after.
    readers: Mutex<Vec<MultiplexedConnection>>,
    /// The URL with credentials blanked, for error messages.
    redacted_url: String,
    /// Blanked out of any error text that might quote it.
    password: Option<String>,
}

impl RedisStream {
    pub(crate) async fn connect(url: &str) -> Result<RedisStream, StreamError> {
        let redacted_url = redact(url);
        let password = password_of(url);
        let (client, connection) = redis_url::connect(url).await.map_err(|e| match e {
            ConnectError::InvalidUrl(message) => StreamError::InvalidUrl(message),
            ConnectError::Unreachable(message) => StreamError::Backend(message),
        })?;
        Ok(RedisStream {
            client,
            connection,
            readers: Mutex::new(Vec::new()),
            redacted_url,
            password,
        })
    }

    fn conn(&self) -> ConnectionManager {
        // A clone shares the one multiplexed connection; commands need `&mut`.
        self.connection.clone()
    }

    fn error<'a>(&'a self, op: &'a str) -> impl Fn(RedisError) -> StreamError + 'a {
        move |e| {
            let text = scrub(self.password.as_deref(), &e.to_string());
            if e.code() == Some("NOGROUP") {
                StreamError::NoGroup(text)
            } else {
                StreamError::Backend(format!("redis {op} on {}: {text}", self.redacted_url))
            }
        }
    }

    pub(crate) async fn ping(&self) -> Result<(), StreamError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .map(drop)
            .map_err(self.error("PING"))
    }

    pub(crate) async fn publish(
        &self,
        stream: &str,
        payloads: &[String],
        max_len: u64,
    ) -> Result<Vec<String>, StreamError> {
        let mut pipe = redis::pipe();
        if payloads.len() > 1 {
            pipe.atomic();
        }
        for payload in payloads {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(max_len)
                .arg("*")
                .arg(EVENT_FIELD)
                .arg(payload);
        }
        pipe.query_async::<Vec<String>>(&mut self.conn())
            .await
            .map_err(self.error("XADD"))
    }

    /// `SET <stream>:epoch 1 NX`: true when the marker was missing.
    pub(crate) async fn claim_epoch(&self, stream: &str) -> Result<bool, StreamError> {
        redis::cmd("SET")
            .arg(format!("{stream}:epoch"))
            .arg(1)
            .arg("NX")
            .query_async::<Option<String>>(&mut self.conn())
            .await
            .map(|set| set.is_some())
            .map_err(self.error("SET NX"))
    }

    /// `DEL <stream>:epoch`.
    pub(crate) async fn drop_epoch(&self, stream: &str) -> Result<(), StreamError> {
        redis::cmd("DEL")
            .arg(format!("{stream}:epoch"))
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(self.error("DEL"))
    }

    pub(crate) async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), StreamError> {
        let created = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut self.conn())
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(self.error("XGROUP CREATE")),
        }
    }

    pub(crate) async fn read(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<RawEntry>, StreamError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if !block.is_zero() {
            // Redis reads BLOCK 0 as "for ever"; a sub-millisecond wait is one.
            cmd.arg("BLOCK").arg(millis(block).max(1));
        }
        cmd.arg("STREAMS").arg(stream).arg(">");
        let reply = if block.is_zero() {
            cmd.query_async::<Value>(&mut self.conn())
                .await
                .map_err(self.error("XREADGROUP"))?
        } else {
            self.blocking_query(&cmd, block).await?
        };
        read_reply(reply)
    }

    /// Runs a blocking command on a connection of its own, bounded by the
    /// block time plus the usual response timeout. A connection that failed or
    /// timed out is dropped rather than reused; so is one whose caller stopped
    /// waiting (a cancelled read), which also ends the blocked command.
    async fn blocking_query(&self, cmd: &Cmd, block: Duration) -> Result<Value, StreamError> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                    .set_response_timeout(None);
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(self.error("connect"))?
            }
        };
        let reply = tokio::time::timeout(block + RESPONSE_TIMEOUT, cmd.query_async(&mut conn))
            .await
            .map_err(|_| {
                StreamError::Backend(format!(
                    "redis XREADGROUP on {}: no answer within {:?}",
                    self.redacted_url,
                    block + RESPONSE_TIMEOUT
                ))
            })?
            .map_err(self.error("XREADGROUP"))?;
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        Ok(reply)
    }

    pub(crate) async fn ack(
        &self,
        stream: &str,
        group: &str,
        entry_ids: &[String],
    ) -> Result<u64, StreamError> {
        redis::cmd("XACK")
            .arg(stream)
            .arg(group)
            .arg(entry_ids)
            .query_async::<u64>(&mut self.conn())
            .await
            .map_err(self.error("XACK"))
    }

    pub(crate) async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<RawEntry>, StreamError> {
        let mut claimed = Vec::new();
        let mut cursor = "0-0".to_owned();
        for _ in 0..MAX_CLAIM_ROUNDS {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(stream)
                .arg(group)
                .arg(consumer)
                .arg(millis(min_idle))
                .arg(&cursor)
                .arg("COUNT")
                .arg(count - claimed.len())
                .query_async(&mut self.conn())
                .await
                .map_err(self.error("XAUTOCLAIM"))?;
            let (next, entries) = autoclaim_reply(reply)?;
            // Redis 6.2 answers nil for claimed entries that were trimmed away
            // (7.0 drops them itself); they reach `decode`, which acknowledges them.
            claimed.extend(entries);
            if next == "0-0" || claimed.len() >= count {
                break;
            }
            cursor = next;
        }
        Ok(claimed)
    }

    pub(crate) async fn forget_idle_consumers(
        &self,
        stream: &str,
        group: &str,
        keep: &str,
        idle: Duration,
    ) -> Result<usize, StreamError> {
        let reply: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(group)
            .query_async(&mut self.conn())
            .await
            .map_err(self.error("XINFO CONSUMERS"))?;
        let consumers = items(reply).ok_or_else(|| unexpected("XINFO CONSUMERS"))?;
        let mut idle_names = Vec::new();
        for info in consumers {
            let fields = pairs(info).ok_or_else(|| unexpected("XINFO CONSUMERS"))?;
            let field = |name: &str| value_of(&fields, name);
            let Some(name) = field("name").and_then(text) else {
                continue;
            };
            // `inactive` (Redis 7.2+) counts from the last successful read;
            // `idle` from the last attempt there, from the last read before.
            let quiet = field("inactive")
                .or_else(|| field("idle"))
                .and_then(integer)
                .unwrap_or(0);
            let pending = field("pending").and_then(integer).unwrap_or(1);
            if name != keep && pending == 0 && quiet >= millis(idle) {
                idle_names.push(name);
            }
        }
        let mut forgotten = 0;
        for name in idle_names {
            let removed: u64 = redis::Script::new(FORGET_CONSUMER)
                .key(stream)
                .arg(group)
                .arg(&name)
                .invoke_async(&mut self.conn())
                .await
                .map_err(self.error("XGROUP DELCONSUMER"))?;
            forgotten += usize::from(removed == 1);
        }
        Ok(forgotten)
    }

    pub(crate) async fn lag(&self, stream: &str, group: &str) -> Result<Lag, StreamError> {
        let reply: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| {
                // A missing stream is "no such key", not NOGROUP.
                if e.to_string().contains("no such key") {
                    StreamError::NoGroup(format!("no stream `{stream}`"))
                } else {
                    self.error("XINFO GROUPS")(e)
                }
            })?;
        let groups = items(reply).ok_or_else(|| unexpected("XINFO GROUPS"))?;
        for info in groups {
            let fields = pairs(info).ok_or_else(|| unexpected("XINFO GROUPS"))?;
            let field = |name: &str| value_of(&fields, name);
            if field("name").and_then(text).as_deref() != Some(group) {
                continue;
            }
            return Ok(Lag {
                pending: field("pending").and_then(integer).unwrap_or(0),
                undelivered: field("lag").and_then(integer),
            });
        }
        Err(StreamError::NoGroup(format!(
            "no group `{group}` on stream `{stream}`"
        )))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unexpected(op: &str) -> StreamError {
    StreamError::Backend(format!("redis {op}: unexpected reply"))
}

/// `XREADGROUP`: nil on timeout, else `[[stream, entries]]` (RESP2) or
/// `{stream: entries}` (RESP3); one stream is asked for.
fn read_reply(reply: Value) -> Result<Vec<RawEntry>, StreamError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(map) => map.into_iter().map(|(_, entries)| entries).collect(),
        other => items(other)
            .ok_or_else(|| unexpected("XREADGROUP"))?
            .into_iter()
            .map(|pair| {
                items(pair)
                    .and_then(|mut p| (p.len() == 2).then(|| p.remove(1)))
                    .ok_or_else(|| unexpected("XREADGROUP"))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut out = Vec::new();
    for entries in streams {
        out.extend(entries_of(entries).ok_or_else(|| unexpected("XREADGROUP"))?);
    }
    Ok(out)
}

/// `XAUTOCLAIM`: `[next cursor, entries, deleted ids (7.0+)]`.
fn autoclaim_reply(reply: Value) -> Result<(String, Vec<RawEntry>), StreamError> {
    let mut parts = items(reply)
        .filter(|p| p.len() >= 2)
        .ok_or_else(|| unexpected("XAUTOCLAIM"))?
        .into_iter();
    let next = parts
        .next()
        .as_ref()
        .and_then(text)
        .ok_or_else(|| unexpected("XAUTOCLAIM"))?;
    let entries = parts
        .next()
        .and_then(entries_of)
        .ok_or_else(|| unexpected("XAUTOCLAIM"))?;
    Ok((next, entries))
}

/// A list of `[id, [field, value, …]]` entries; the fields are nil for an
/// entry that no longer exists.
fn entries_of(value: Value) -> Option<Vec<RawEntry>> {
    items(value)?
        .into_iter()
        .filter(|entry| !matches!(entry, Value::Nil))
        .map(|entry| {
            let mut entry = items(entry)?.into_iter();
            let id = text(&entry.next()?)?;
            let payload = match entry.next() {
                None | Some(Value::Nil) => None,
                Some(fields) => pairs(fields)?
                    .into_iter()
                    .find(|(k, _)| text(k).as_deref() == Some(EVENT_FIELD))
                    .and_then(|(_, v)| text(&v)),
            };
            Some(RawEntry { id, payload })
        })
        .collect()
}

fn items(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// A map reply: RESP3 `Map`, or a RESP2 flat array of keys and values.
fn pairs(value: Value) -> Option<Vec<(Value, Value)>> {
    match value {
        Value::Map(pairs) => Some(pairs),
        Value::Array(flat) if flat.len() % 2 == 0 => {
            let mut flat = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                pairs.push((k, v));
            }
            Some(pairs)
        }
        _ => None,
    }
}

/// The value of `name` in a map reply's pairs.
fn value_of<'a>(fields: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    fields
        .iter()
        .find(|(k, _)| text(k).as_deref() == Some(name))
        .map(|(_, v)| v)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn read_replies_in_both_protocols() {
        let entry = Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("event"), bulk("{}")]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![entry.clone()]),
        ])]);
        let got = read_reply(resp2).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "1-0");
        assert_eq!(got[0].payload.as_deref(), Some("{}"));

        let resp3 = Value::Map(vec![(bulk("s"), Value::Array(vec![entry]))]);
        assert_eq!(read_reply(resp3).unwrap().len(), 1);
        assert!(read_reply(Value::Nil).unwrap().is_empty());
    }

    #[test]
    fn autoclaim_reply_with_a_trimmed_entry() {
        let reply = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![Value::Array(vec![bulk("2-0"), Value::Nil])]),
            Value::Array(vec![]),
        ]);
        let (next, entries) = autoclaim_reply(reply).unwrap();
        assert_eq!(next, "0-0");
        assert_eq!(entries.len(), 1);
        assert!(entries[0].payload.is_none());
    }
}
