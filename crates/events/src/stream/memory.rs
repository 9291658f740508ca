//! The in-process stream: Redis Streams semantics without a server, for the
//! devstack (every part in one process) and tests.
//!
//! Stores are process-wide and looked up by name, as the cache crate's memory
//! stores are, so the parts of the devstack share one stream just by using the
//! same URL. Locks are `std` mutexes held only for map operations, never across
//! an `.await`; blocked readers wait on a per-stream `Notify`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::{Lag, RawEntry, StreamError};

/// Named buses live as long as the process, like a Redis server outlives its clients.
static BUSES: OnceLock<Mutex<HashMap<String, Arc<MemoryBus>>>> = OnceLock::new();

pub(crate) fn bus_named(name: &str) -> Arc<MemoryBus> {
    let buses = BUSES.get_or_init(Default::default);
    Arc::clone(lock(buses).entry(name.to_owned()).or_default())
}

/// Every stream of one named store.
#[derive(Default)]
pub(crate) struct MemoryBus {
    streams: Mutex<HashMap<String, Stream>>,
    /// Streams whose epoch marker has been set ([`super::EventStream::claim_epoch`]).
    epochs: Mutex<std::collections::HashSet<String>>,
}

/// An entry id as Redis writes it: `<milliseconds>-<sequence>`, increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    fn parse(raw: &str) -> Option<EntryId> {
        let (ms, seq) = raw.split_once('-')?;
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[derive(Default)]
struct Stream {
    entries: VecDeque<(EntryId, Arc<str>)>,
    last_id: EntryId,
    groups: HashMap<String, Group>,
    /// Woken on every append, so blocked readers look again.
    appended: Arc<Notify>,
}

#[derive(Default)]
struct Group {
    /// Entries up to this one have been handed out.
    last_delivered: EntryId,
    /// Handed out and not acknowledged, by entry id.
    pending: BTreeMap<EntryId, Pending>,
}

struct Pending {
    #[allow(dead_code, reason = "kept as Redis keeps it, for debugging")]
    consumer: String,
    delivered_at: Instant,
}

impl Stream {
    fn next_id(&mut self) -> EntryId {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_id = if now > self.last_id.ms {
            EntryId { ms: now, seq: 0 }
        } else {
            EntryId {
                ms: self.last_id.ms,
                seq: self.last_id.seq + 1,
            }
        };
        self.last_id
    }

    /// Index of the first entry after `id`.
    fn after(&self, id: EntryId) -> usize {
        self.entries.partition_point(|(e, _)| *e <= id)
    }

    fn payload(&self, id: EntryId) -> Option<&Arc<str>> {
        let i = self.entries.partition_point(|(e, _)| *e < id);
        self.entries
            .get(i)
            .filter(|(e, _)| *e == id)
            .map(|(_, p)| p)
    }

    fn group(&mut self, name: &str) -> Option<&mut Group> {
        self.groups.get_mut(name)
    }
}

impl MemoryBus {
    pub(crate) fn publish(&self, stream: &str, payloads: Vec<String>, max_len: u64) -> Vec<String> {
        let (ids, appended) = {
            let mut streams = lock(&self.streams);
            let s = streams.entry(stream.to_owned()).or_default();
            let ids = payloads
                .into_iter()
                .map(|payload| {
                    let id = s.next_id();
                    s.entries.push_back((id, payload.into()));
                    id.to_string()
                })
                .collect();
            let max_len = usize::try_from(max_len).unwrap_or(usize::MAX);
            while s.entries.len() > max_len {
                s.entries.pop_front();
            }
            (ids, Arc::clone(&s.appended))
        };
        appended.notify_waiters();
        ids
    }

    pub(crate) fn claim_epoch(&self, stream: &str) -> bool {
        lock(&self.epochs).insert(stream.to_owned())
    }

    pub(crate) fn drop_epoch(&self, stream: &str) {
        lock(&self.epochs).remove(stream);
    }

    pub(crate) fn ensure_group(&self, stream: &str, group: &str) {
        let mut streams = lock(&self.streams);
        let s = streams.entry(stream.to_owned()).or_default();
        s.groups.entry(group.to_owned()).or_default();
    }

    pub(crate) async fn read(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<RawEntry>, StreamError> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            let appended = {
                let streams = lock(&self.streams);
                let s = streams.get(stream).ok_or_else(|| no_group(stream, group))?;
                Arc::clone(&s.appended)
            };
            // Registered before looking, so an append between the look and the
            // wait still wakes us.
            let notified = appended.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let taken = self.take_new(stream, group, consumer, count)?;
            if !taken.is_empty() || block.is_zero() {
                return Ok(taken);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    fn take_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<RawEntry>, StreamError> {
        let mut streams = lock(&self.streams);
        let s = streams
            .get_mut(stream)
            .ok_or_else(|| no_group(stream, group))?;
        let last = s
            .groups
            .get(group)
            .ok_or_else(|| no_group(stream, group))?
            .last_delivered;
        let start = s.after(last);
        let taken: Vec<(EntryId, Arc<str>)> =
            s.entries.range(start..).take(count).cloned().collect();
        let g = s.group(group).ok_or_else(|| no_group(stream, group))?;
        let now = Instant::now();
        for (id, _) in &taken {
            g.pending.insert(
                *id,
                Pending {
                    consumer: consumer.to_owned(),
                    delivered_at: now,
                },
            );
        }
        if let Some((id, _)) = taken.last() {
            g.last_delivered = *id;
        }
        Ok(taken
            .into_iter()
            .map(|(id, payload)| RawEntry {
                id: id.to_string(),
                payload: Some(payload.to_string()),
            })
            .collect())
    }

    pub(crate) fn ack(&self, stream: &str, group: &str, entry_ids: &[String]) -> u64 {
        let mut streams = lock(&self.streams);
        let Some(g) = streams.get_mut(stream).and_then(|s| s.group(group)) else {
            return 0;
        };
        entry_ids
            .iter()
            .filter_map(|raw| EntryId::parse(raw))
            .filter(|id| g.pending.remove(id).is_some())
            .count() as u64
    }

    pub(crate) fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<RawEntry>, StreamError> {
        let mut streams = lock(&self.streams);
        let s = streams
            .get_mut(stream)
            .ok_or_else(|| no_group(stream, group))?;
        let now = Instant::now();
        let stale: Vec<EntryId> = s
            .groups
            .get(group)
            .ok_or_else(|| no_group(stream, group))?
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.delivered_at) >= min_idle)
            .map(|(id, _)| *id)
            .take(count)
            .collect();
        let found: Vec<(EntryId, Option<Arc<str>>)> = stale
            .into_iter()
            .map(|id| (id, s.payload(id).cloned()))
            .collect();
        let g = s.group(group).ok_or_else(|| no_group(stream, group))?;
        let mut claimed = Vec::new();
        for (id, payload) in found {
            match payload {
                Some(payload) => {
                    g.pending.insert(
                        id,
                        Pending {
                            consumer: consumer.to_owned(),
                            delivered_at: now,
                        },
                    );
                    claimed.push(RawEntry {
                        id: id.to_string(),
                        payload: Some(payload.to_string()),
                    });
                }
                // Trimmed away: nothing left to hand out (Redis 7 does the same).
                None => {
                    g.pending.remove(&id);
                }
            }
        }
        Ok(claimed)
    }

    pub(crate) fn lag(&self, stream: &str, group: &str) -> Result<Lag, StreamError> {
        let streams = lock(&self.streams);
        let s = streams.get(stream).ok_or_else(|| no_group(stream, group))?;
        let g = s.groups.get(group).ok_or_else(|| no_group(stream, group))?;
        Ok(Lag {
            pending: g.pending.len() as u64,
            undelivered: Some((s.entries.len() - s.after(g.last_delivered)) as u64),
        })
    }
}

fn no_group(stream: &str, group: &str) -> StreamError {
    StreamError::NoGroup(format!("no stream `{stream}` or group `{group}`"))
}

/// A panic while holding the lock leaves plain data behind, still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_increase_within_one_millisecond() {
        let mut s = Stream::default();
        let ids: Vec<EntryId> = (0..100).map(|_| s.next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let id = ids[0];
        assert_eq!(EntryId::parse(&id.to_string()), Some(id));
        assert_eq!(EntryId::parse("12"), None);
    }

    #[test]
    fn trimming_keeps_the_newest_and_claim_drops_trimmed_pending() {
        let bus = MemoryBus::default();
        bus.ensure_group("s", "g");
        bus.publish("s", vec!["a".into(), "b".into()], 10);
        let taken = bus.take_new("s", "g", "c1", 10).unwrap();
        assert_eq!(taken.len(), 2);
        bus.publish("s", (0..10).map(|i| i.to_string()).collect(), 10);
        let claimed = bus.claim_stale("s", "g", "c2", Duration::ZERO, 10).unwrap();
        assert!(claimed.is_empty(), "both pending entries were trimmed");
        let lag = bus.lag("s", "g").unwrap();
        assert_eq!(lag.pending, 0);
        assert_eq!(lag.undelivered, Some(10));
    }
}
