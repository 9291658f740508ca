//! The in-process backend: the devstack and tests get Redis semantics without a server.
//!
//! Stores are process-wide and looked up by name, so separately configured components in
//! one process (gateway and services in the devstack) share data and the pub/sub bus just
//! by using the same URL. Locks are `std` mutexes held only for map operations, never
//! across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::CacheError;
use crate::rate_limit::{self, Lease, Quota, RateDecision};
use crate::subscription::Subscription;

/// Named stores live as long as the process, like a Redis server outlives its clients.
static STORES: OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = OnceLock::new();

/// Expired keys nobody reads again would otherwise stay forever; a full sweep every this
/// many writes keeps memory bounded at an amortised O(1) cost per write.
const SWEEP_EVERY_WRITES: u32 = 1024;

/// Messages a subscriber may fall behind before it starts losing them.
const CHANNEL_CAPACITY: usize = 1024;

pub(crate) fn store_named(name: &str) -> Arc<MemoryStore> {
    let stores = STORES.get_or_init(Default::default);
    let mut stores = lock(stores);
    Arc::clone(
        stores
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(MemoryStore::new())),
    )
}

pub(crate) struct MemoryStore {
    /// Rate-limit arrival times are seconds since this instant, mirroring Redis `TIME`.
    epoch: Instant,
    data: Mutex<Data>,
    channels: Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>,
}

#[derive(Default)]
struct Data {
    entries: HashMap<String, Entry>,
    writes_since_sweep: u32,
}

struct Entry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

impl Data {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| !e.is_live(now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn insert(&mut self, key: String, value: Vec<u8>, ttl: Option<Duration>, now: Instant) {
        let expires_at = ttl.map(|ttl| now + ttl);
        self.entries.insert(key, Entry { value, expires_at });
        self.wrote(now);
    }

    fn wrote(&mut self, now: Instant) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY_WRITES {
            self.writes_since_sweep = 0;
            self.entries.retain(|_, e| e.is_live(now));
        }
    }
}

impl MemoryStore {
    pub(crate) fn new() -> Self {
        MemoryStore {
            epoch: Instant::now(),
            data: Mutex::new(Data::default()),
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        lock(&self.data).live(key, now).map(|e| e.value.clone())
    }

    pub(crate) fn set(&self, key: String, value: &[u8], ttl: Option<Duration>) {
        let now = Instant::now();
        lock(&self.data).insert(key, value.to_vec(), ttl, now);
    }

    pub(crate) fn set_if_absent(&self, key: String, value: &[u8], ttl: Option<Duration>) -> bool {
        let now = Instant::now();
        let mut data = lock(&self.data);
        if data.live(&key, now).is_some() {
            return false;
        }
        data.insert(key, value.to_vec(), ttl, now);
        true
    }

    pub(crate) fn delete(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut data = lock(&self.data);
        let existed = data.live(key, now).is_some();
        data.entries.remove(key);
        existed
    }

    /// Counters are stored as decimal text, as Redis does, so `get` reads the same bytes
    /// from both backends.
    pub(crate) fn incr(
        &self,
        key: String,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let now = Instant::now();
        let mut data = lock(&self.data);
        match data.live(&key, now) {
            Some(entry) => {
                let current = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| CacheError::Backend("value is not an integer".into()))?;
                let next = current
                    .checked_add(by)
                    .ok_or_else(|| CacheError::Backend("increment would overflow".into()))?;
                entry.value = next.to_string().into_bytes();
                data.wrote(now);
                Ok(next)
            }
            None => {
                data.insert(key, by.to_string().into_bytes(), ttl, now);
                Ok(by)
            }
        }
    }

    pub(crate) fn rate_limit(&self, key: String, quota: Quota) -> Result<RateDecision, CacheError> {
        Ok(self.lease(key, quota, 1)?.decision(quota.limit))
    }

    pub(crate) fn lease(
        &self,
        key: String,
        quota: Quota,
        wanted: u32,
    ) -> Result<Lease, CacheError> {
        let instant = Instant::now();
        let now = instant.duration_since(self.epoch).as_secs_f64();
        let mut data = lock(&self.data);
        let take = rate_limit::take(quota, now, tat(&mut data, &key, instant), wanted);
        if let Some((new_tat, ttl)) = take.store {
            data.insert(key, new_tat.to_string().into_bytes(), Some(ttl), instant);
        }
        Ok(take.lease)
    }

    pub(crate) fn release(&self, key: String, quota: Quota, units: u32) {
        let instant = Instant::now();
        let now = instant.duration_since(self.epoch).as_secs_f64();
        let mut data = lock(&self.data);
        let Some(tat) = tat(&mut data, &key, instant) else {
            return;
        };
        match rate_limit::give_back(quota, now, tat, units) {
            Some((new_tat, ttl)) => {
                data.insert(key, new_tat.to_string().into_bytes(), Some(ttl), instant)
            }
            None => {
                data.entries.remove(&key);
            }
        }
    }

    pub(crate) fn publish(&self, channel: &str, payload: &[u8]) {
        let mut channels = lock(&self.channels);
        if let Some(sender) = channels.get(channel) {
            // An error means nobody listens any more: forget the channel so that one-off
            // channel names do not accumulate.
            if sender.send(payload.to_vec()).is_err() {
                channels.remove(channel);
            }
        }
    }

    pub(crate) fn subscribe(&self, channel: &str) -> Subscription {
        let receiver = lock(&self.channels)
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription::from_broadcast(channel.to_owned(), receiver)
    }
}

/// A rate-limit key's arrival time. Unreadable state counts as a fresh key, like
/// `tonumber` returning nil in the script.
fn tat(data: &mut Data, key: &str, now: Instant) -> Option<f64> {
    data.live(key, now)
        .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<f64>().ok())
}

/// A panic elsewhere while holding the lock cannot leave these maps half-updated in a way
/// that matters more than taking the whole cache down, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_drops_expired_keys_nobody_reads() {
        let store = MemoryStore::new();
        store.set("gone".into(), b"x", Some(Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(5));
        for i in 0..SWEEP_EVERY_WRITES {
            store.set(format!("k{i}"), b"x", None);
        }
        let data = lock(&store.data);
        assert!(!data.entries.contains_key("gone"));
        assert_eq!(data.entries.len(), SWEEP_EVERY_WRITES as usize);
    }

    #[test]
    fn channels_without_listeners_are_forgotten() {
        let store = MemoryStore::new();
        drop(store.subscribe("c"));
        store.publish("c", b"x");
        assert!(lock(&store.channels).is_empty());
    }
}
