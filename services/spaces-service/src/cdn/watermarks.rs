//! Spaces' watermarks, fetched and decoded once and kept in memory.
//!
//! A watermark is fetched from its URL through the outbound guard (the URL
//! checked again before each fetch, names resolved to public addresses only,
//! no redirects, TLS verified, a time limit, at most `watermarks.max_bytes`
//! read), decoded once, and kept by URL, position and opacity, the least
//! recently used dropped beyond `watermarks.cache_entries`. It is fetched
//! again after `watermarks.refresh_secs`; while a refetch fails, the copy in
//! hand is used. A watermark that was never fetched cannot be applied, and
//! its images are not served without it (503): a space that asks for a
//! watermark never delivers its images bare.
//!
//! Concurrent requests for one watermark wait for one fetch. Each decoded
//! watermark has a fingerprint (its bytes, position and opacity, hashed) that
//! names the variants made with it: a changed image, position or opacity
//! makes new variants rather than serving old ones.

use crate::cdn::CdnError;
use crate::config::WatermarksConfig;
use crate::settings::{self, Gravity};
use futures_util::StreamExt;
use media::Compass;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a failed fetch is remembered before the next try.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// The whole fetch: connecting, sending, reading.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A watermark ready to lay over images.
pub struct Prepared {
    pub mark: media::Watermark,
    /// 16 hex digits naming the image, position and opacity.
    pub fingerprint: String,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("mark", &self.mark)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    url: String,
    position: Compass,
    opacity: u64,
}

#[derive(Default)]
struct Slot {
    state: tokio::sync::Mutex<Option<Loaded>>,
}

struct Loaded {
    current: Result<Arc<Prepared>, String>,
    next_fetch: Instant,
}

#[derive(Default)]
struct Slots {
    map: HashMap<Key, (Arc<Slot>, u64)>,
    tick: u64,
}

/// The watermark cache, and the guarded client that fills it.
pub struct Watermarks {
    guard: outbound::Guard,
    client: reqwest::Client,
    slots: Mutex<Slots>,
    capacity: usize,
    refresh: Duration,
    max_bytes: u64,
    limits: media::Limits,
}

impl std::fmt::Debug for Watermarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermarks")
            .field("guard", &self.guard)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Watermarks {
    pub fn new(config: &WatermarksConfig) -> anyhow::Result<Watermarks> {
        let guard = outbound::Guard::new(outbound::Policy {
            allow_private: config.allow_private_targets,
        });
        let client = guard.client(&outbound::ClientOptions {
            timeout: FETCH_TIMEOUT,
            connect_timeout: FETCH_TIMEOUT,
            user_agent: "Spaceport-CDN (watermarks)".into(),
            max_idle_per_host: 2,
        })?;
        Ok(Watermarks {
            guard,
            client,
            slots: Mutex::new(Slots::default()),
            capacity: config.cache_entries,
            refresh: Duration::from_secs(config.refresh_secs),
            max_bytes: config.max_bytes,
            // Watermarks are shrunk to 1024 pixels a side once decoded; what
            // is decoded first is bounded here.
            limits: media::Limits {
                max_pixels: 16_000_000,
                max_alloc: 128 * 1024 * 1024,
            },
        })
    }

    /// Whether watermark URLs may be `http` or name internal hosts
    /// (`watermarks.allow_private_targets`).
    pub fn allows_private_targets(&self) -> bool {
        self.guard.policy().allow_private
    }

    /// The space's watermark, decoded; fetched when not in memory or due for
    /// a refresh. 503 when it never could be fetched (or not lately).
    pub async fn get(
        &self,
        watermark: &settings::Watermark,
        image_work: &tokio::sync::Semaphore,
    ) -> Result<Arc<Prepared>, CdnError> {
        let unavailable = || CdnError::unavailable("The space's watermark is unavailable.");
        let Some(url) = watermark.url.clone() else {
            return Err(unavailable());
        };
        let position = compass(watermark.position);
        let opacity = watermark.opacity;
        let slot = self.slot(Key {
            url: url.clone(),
            position,
            opacity: opacity.to_bits(),
        });
        let mut state = slot.state.lock().await;
        let now = Instant::now();
        if let Some(loaded) = state.as_ref()
            && now < loaded.next_fetch
        {
            return loaded.current.clone().map_err(|_| unavailable());
        }
        let outcome = self.fetch(&url, position, opacity, image_work).await;
        let loaded = match outcome {
            Ok(prepared) => Loaded {
                current: Ok(Arc::new(prepared)),
                next_fetch: now + self.refresh,
            },
            Err(reason) => {
                tracing::warn!(url = %url, %reason, "could not fetch a watermark");
                let previous = state.take().and_then(|l| l.current.ok());
                Loaded {
                    current: previous.ok_or(reason),
                    next_fetch: now + RETRY_AFTER_FAILURE,
                }
            }
        };
        let current = loaded.current.clone();
        *state = Some(loaded);
        current.map_err(|_| unavailable())
    }

    /// The slot of `key`, made when missing; the least recently used slot
    /// goes when there are too many.
    fn slot(&self, key: Key) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.tick += 1;
        let tick = slots.tick;
        if let Some((slot, used)) = slots.map.get_mut(&key) {
            *used = tick;
            return slot.clone();
        }
        if slots.map.len() >= self.capacity
            && let Some(oldest) = slots
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            slots.map.remove(&oldest);
        }
        let slot = Arc::new(Slot::default());
        slots.map.insert(key, (slot.clone(), tick));
        slot
    }

    async fn fetch(
        &self,
        url: &str,
        position: Compass,
        opacity: f64,
        image_work: &tokio::sync::Semaphore,
    ) -> Result<Prepared, String> {
        let url = self.guard.check_url(url).map_err(|r| r.to_string())?;
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(format!("larger than {} bytes", self.max_bytes));
        }
        let mut bytes = Vec::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("reading failed: {e}"))?;
            if (bytes.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(format!("larger than {} bytes", self.max_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        let mut hasher = Sha256::new();
        hasher.update(&bytes);
        hasher.update(position.short().as_bytes());
        hasher.update(opacity.to_bits().to_be_bytes());
        let fingerprint = crate::storage::hex(&hasher.finalize()[..8]);
        let limits = self.limits;
        // Decoding is image work like any other: one per core.
        let _permit = image_work
            .acquire()
            .await
            .map_err(|e| format!("no image slot: {e}"))?;
        let mark = tokio::task::spawn_blocking(move || {
            media::Watermark::decode(&bytes, position, opacity, &limits)
        })
        .await
        .map_err(|e| format!("decoding failed: {e}"))?
        .map_err(|e| format!("not a usable image: {e}"))?;
        Ok(Prepared { mark, fingerprint })
    }
}

fn compass(position: Gravity) -> Compass {
    match position {
        Gravity::North => Compass::North,
        Gravity::Northeast => Compass::NorthEast,
        Gravity::East => Compass::East,
        Gravity::Southeast => Compass::SouthEast,
        Gravity::South => Compass::South,
        Gravity::Southwest => Compass::SouthWest,
        Gravity::West => Compass::West,
        Gravity::Northwest => Compass::NorthWest,
        Gravity::Center => Compass::Center,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_most_recently_used() {
        let config = WatermarksConfig {
            allow_private_targets: false,
            cache_entries: 2,
            refresh_secs: 60,
            max_bytes: 1024,
        };
        let cache = Watermarks::new(&config).unwrap();
        let key = |url: &str| Key {
            url: url.into(),
            position: Compass::SouthEast,
            opacity: 0.5f64.to_bits(),
        };
        let a = cache.slot(key("https://a.example/m.png"));
        cache.slot(key("https://b.example/m.png"));
        // `a` used again: `b` is now the oldest and goes for `c`.
        assert!(Arc::ptr_eq(&a, &cache.slot(key("https://a.example/m.png"))));
        cache.slot(key("https://c.example/m.png"));
        let slots = cache.slots.lock().unwrap();
        assert_eq!(slots.map.len(), 2);
        assert!(slots.map.contains_key(&key("https://a.example/m.png")));
        assert!(!slots.map.contains_key(&key("https://b.example/m.png")));
    }
}
