//! What a replica remembers between CDN requests, so that a request for
//! content already delivered touches neither the database nor storage:
//!
//! - **Files found** ([`Deliverable`]: the file, its space, the access
//!   control in force), by storage path, for `delivery.cache_ttl_secs`.
//!   Any change that could alter what a path serves, or to whom (a file
//!   renamed, moved, deleted or its access control changed; a folder's
//!   access control or place; the space's settings, state or deletion),
//!   forgets the space's entries on every replica at once: the replica that
//!   made it forgets them itself and publishes the space's id on the cache
//!   bus ([`CHANNEL`]). The time to live bounds how long a replica that
//!   missed a message (a Redis reconnect) serves what it knew. Paths that
//!   name nothing are not remembered, so a new upload is served at once.
//! - **Variant bytes**, by object key, up to `delivery.variant_memory_bytes`
//!   in all (each at most [`MAX_VARIANT_BYTES`]), the oldest forgotten
//!   first. A variant's key names its file's id and the digest of its
//!   transform and watermark, so its bytes never change: nothing needs to be
//!   forgotten for correctness, and a deleted file's variants are reached
//!   only through its (forgotten) entry.

use crate::delivery::Deliverable;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The cache bus channel on which a space's id says "forget what you know
/// of its files".
pub const CHANNEL: &str = "spaces.delivery";
/// Files remembered at most; past it the whole map is dropped and refills.
const CAPACITY: usize = 10_000;
/// Larger variants are read from storage each time.
pub const MAX_VARIANT_BYTES: u64 = 1024 * 1024;

pub struct DeliveryCache {
    found: RwLock<HashMap<String, (Arc<Deliverable>, Instant)>>,
    ttl: Duration,
    variants: Mutex<VariantBytes>,
}

impl std::fmt::Debug for DeliveryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl DeliveryCache {
    /// `ttl` zero remembers no file; `variant_budget` zero no variant.
    pub fn new(ttl: Duration, variant_budget: u64) -> DeliveryCache {
        DeliveryCache {
            found: RwLock::new(HashMap::new()),
            ttl,
            variants: Mutex::new(VariantBytes {
                budget: variant_budget,
                ..VariantBytes::default()
            }),
        }
    }

    /// The file at `storage_path`, when found less than the time to live ago.
    pub fn deliverable(&self, storage_path: &str) -> Option<Arc<Deliverable>> {
        let found = self.found.read().unwrap_or_else(|e| e.into_inner());
        found
            .get(storage_path)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(deliverable, _)| deliverable.clone())
    }

    pub fn remember(&self, storage_path: &str, deliverable: Arc<Deliverable>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut found = self.found.write().unwrap_or_else(|e| e.into_inner());
        if found.len() >= CAPACITY {
            found.clear();
        }
        found.insert(storage_path.to_owned(), (deliverable, Instant::now()));
    }

    /// Forgets every file of the space `space_id` on this replica.
    pub fn forget_space(&self, space_id: &str) {
        let mut found = self.found.write().unwrap_or_else(|e| e.into_inner());
        found.retain(|_, (deliverable, _)| deliverable.space.id != space_id);
    }

    /// Forgets the space's files here and, through the cache bus, on every
    /// other replica. A failed publication is logged: the others then serve
    /// what they knew for at most the time to live.
    pub async fn space_changed(&self, bus: &cache::Cache, space_id: &str) {
        self.forget_space(space_id);
        if let Err(e) = bus.publish(CHANNEL, space_id.as_bytes()).await {
            tracing::warn!(error = %e, space = %space_id, "could not tell the other replicas of a change to a space's files");
        }
    }

    /// Forgets spaces as other replicas (and this one) announce changes, for
    /// as long as the service runs.
    pub async fn listen(self: Arc<Self>, bus: &cache::Cache) -> anyhow::Result<()> {
        let mut subscription = bus.subscribe(CHANNEL).await?;
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                if let Ok(space_id) = std::str::from_utf8(&message) {
                    self.forget_space(space_id);
                }
            }
        });
        Ok(())
    }

    /// A variant's bytes, when remembered.
    pub fn variant(&self, key: &str) -> Option<Bytes> {
        let variants = self.variants.lock().unwrap_or_else(|e| e.into_inner());
        variants.bytes.get(key).cloned()
    }

    /// Whether a variant of `size` bytes would be remembered.
    pub fn keeps_variant(&self, size: u64) -> bool {
        let variants = self.variants.lock().unwrap_or_else(|e| e.into_inner());
        size <= MAX_VARIANT_BYTES && size <= variants.budget
    }

    pub fn remember_variant(&self, key: &str, bytes: Bytes) {
        let size = bytes.len() as u64;
        let mut variants = self.variants.lock().unwrap_or_else(|e| e.into_inner());
        if size > MAX_VARIANT_BYTES || size > variants.budget || variants.bytes.contains_key(key) {
            return;
        }
        while variants.total + size > variants.budget {
            let Some(oldest) = variants.order.pop_front() else {
                break;
            };
            if let Some(gone) = variants.bytes.remove(&oldest) {
                variants.total -= gone.len() as u64;
            }
        }
        variants.total += size;
        variants.order.push_back(key.to_owned());
        variants.bytes.insert(key.to_owned(), bytes);
    }
}

/// Variant bytes by object key, the oldest first out.
#[derive(Default)]
struct VariantBytes {
    bytes: HashMap<String, Bytes>,
    order: VecDeque<String>,
    total: u64,
    budget: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_stay_within_their_budget_oldest_out_first() {
        let cache = DeliveryCache::new(Duration::from_secs(5), 10);
        cache.remember_variant("a", Bytes::from_static(b"aaaa"));
        cache.remember_variant("b", Bytes::from_static(b"bbbb"));
        assert!(cache.variant("a").is_some());
        cache.remember_variant("c", Bytes::from_static(b"cccc"));
        assert_eq!(cache.variant("a"), None);
        assert_eq!(cache.variant("b").as_deref(), Some(&b"bbbb"[..]));
        assert_eq!(cache.variant("c").as_deref(), Some(&b"cccc"[..]));
        // Larger than the whole budget: never kept, nothing evicted for it.
        cache.remember_variant("d", Bytes::from(vec![0; 11]));
        assert_eq!(cache.variant("d"), None);
        assert!(cache.variant("b").is_some());
        assert!(!cache.keeps_variant(11));
        let none = DeliveryCache::new(Duration::ZERO, 0);
        none.remember_variant("a", Bytes::from_static(b"a"));
        assert_eq!(none.variant("a"), None);
    }
}
