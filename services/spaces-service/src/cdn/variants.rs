//! Variants (a transform's output, watermarked or not): rendered once, stored
//! beside their original, served from storage afterwards.
//!
//! The first requests for a variant that is not stored share one rendering
//! (single flight, per replica): the first starts it as a task of its own, the
//! others wait for the same outcome. The rendering takes a transform slot
//! (`SpacesState::image_work`, one per core, shared with uploads), waiting at
//! most `delivery.transform_wait_ms` (then 503 with `Retry-After`, as
//! Tuzzle's CDN answers when its processing limit is reached); only then is
//! the original read into memory. Requests wait for the outcome at most
//! `delivery.transform_timeout_ms` beyond that (then 504). A decode or encode
//! on a blocking thread cannot be interrupted, so the rendering does not
//! pretend to stop: it keeps its slot until it is done (the slots stay an
//! honest bound of the CPU and memory in use), and stores its output for the
//! next request. What bounds its duration is the work itself: originals of at
//! most `delivery.transform_max_source_bytes` and `media::Limits` pixels,
//! outputs of at most 4096 pixels a side.

use crate::cdn::CdnError;
use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use diesel::prelude::*;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Database, StoreError};
use tokio::sync::Semaphore;

/// One variant to make.
#[derive(Debug)]
pub struct Job {
    /// Where the variant is stored.
    pub key: String,
    /// The original's object key.
    pub source: String,
    pub file_id: String,
    pub transform: media::Transform,
    pub watermark: Option<Arc<super::watermarks::Prepared>>,
}

/// What a rendering gave.
#[derive(Debug, Clone)]
pub enum Ready {
    /// The variant's bytes, just rendered (and stored, unless storing failed).
    Rendered(Bytes),
    /// The variant was found stored when the rendering began.
    Stored,
}

/// Why a rendering failed; shared by everyone who waited for it.
#[derive(Debug, Clone)]
enum Failure {
    Busy,
    /// The original's bytes are not in storage.
    Missing,
    Invalid(media::InvalidModifiers),
    TooLarge(String),
    Undecodable(String),
    Unavailable(String),
    Internal(String),
}

impl From<Failure> for CdnError {
    fn from(failure: Failure) -> CdnError {
        match failure {
            Failure::Busy => CdnError::busy(),
            Failure::Missing => {
                tracing::error!("a file's original is missing from storage");
                CdnError::not_found()
            }
            Failure::Invalid(invalid) => CdnError::invalid_modifiers(&invalid),
            Failure::TooLarge(reason) => CdnError::too_large(&reason),
            Failure::Undecodable(reason) => CdnError::undecodable(&reason),
            Failure::Unavailable(reason) => {
                tracing::warn!(%reason, "a variant could not be made");
                CdnError::unavailable("Storage is unavailable, try again later.")
            }
            Failure::Internal(reason) => CdnError::internal(&reason),
        }
    }
}

type Flight = Shared<BoxFuture<'static, Result<Ready, Failure>>>;

/// The variants of this replica: renderings in flight, their settings and
/// metrics.
pub struct Variants {
    flights: Arc<Mutex<HashMap<String, Flight>>>,
    wait: Duration,
    budget: Duration,
    limits: media::Limits,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Variants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variants")
            .field("wait", &self.wait)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// What a rendering needs of the service.
#[derive(Clone)]
pub struct Tools {
    pub storage: Storage,
    pub image_work: Arc<Semaphore>,
    pub db: Database,
}

impl Variants {
    pub fn new(wait: Duration, budget: Duration) -> Variants {
        Variants {
            flights: Arc::default(),
            wait,
            budget,
            limits: media::Limits::default(),
            metrics: Metrics::default(),
        }
    }

    /// The variant `job` names, rendered by this request or by the one
    /// already rendering it.
    pub async fn obtain(&self, tools: &Tools, job: Job) -> Result<Ready, CdnError> {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&job.key) {
                Some(flight) => flight.clone(),
                None => {
                    let key = job.key.clone();
                    let context = Rendering {
                        tools: tools.clone(),
                        wait: self.wait,
                        limits: self.limits,
                        metrics: self.metrics.clone(),
                    };
                    let registry = self.flights.clone();
                    let finished = key.clone();
                    // A task of its own: the rendering goes on (and is stored)
                    // when the requests that wait for it give up or go away.
                    // It leaves the registry itself, which it can only do
                    // once this lock is released, after its insertion.
                    let task = tokio::spawn(async move {
                        let outcome = context.run(job).await;
                        registry
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&finished);
                        outcome
                    });
                    let flight = async move {
                        task.await
                            .unwrap_or_else(|e| Err(Failure::Internal(e.to_string())))
                    }
                    .boxed()
                    .shared();
                    flights.insert(key, flight.clone());
                    flight
                }
            }
        };
        match tokio::time::timeout(self.wait + self.budget, flight).await {
            Ok(outcome) => outcome.map_err(CdnError::from),
            Err(_) => {
                self.metrics.outcome("timeout");
                Err(CdnError::timeout())
            }
        }
    }
}

struct Rendering {
    tools: Tools,
    wait: Duration,
    limits: media::Limits,
    metrics: Metrics,
}

impl Rendering {
    async fn run(self, job: Job) -> Result<Ready, Failure> {
        let storage = &self.tools.storage;
        // Another flight may have stored it since the request looked.
        match storage.head(&job.key).await {
            Ok(_) => return Ok(Ready::Stored),
            Err(StorageError::NotFound) => {}
            Err(e) => return Err(Failure::Unavailable(e.to_string())),
        }
        let permit =
            match tokio::time::timeout(self.wait, self.tools.image_work.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(closed)) => return Err(Failure::Internal(closed.to_string())),
                Err(_) => {
                    self.metrics.outcome("busy");
                    return Err(Failure::Busy);
                }
            };
        let started = Instant::now();
        let original = storage.read_all(&job.source).await.map_err(|e| match e {
            StorageError::NotFound => Failure::Missing,
            e => Failure::Unavailable(e.to_string()),
        })?;
        let limits = self.limits;
        let Job {
            key,
            file_id,
            transform,
            watermark,
            ..
        } = job;
        let rendered = tokio::task::spawn_blocking(move || {
            // The slot is released when the work is done, not when a
            // request stops waiting for it.
            let _permit = permit;
            media::render(
                &original,
                &transform,
                watermark.as_deref().map(|w| &w.mark),
                &limits,
            )
        })
        .await
        .map_err(|e| Failure::Internal(e.to_string()))?;
        let rendered = rendered.map_err(|e| {
            self.metrics.outcome("failed");
            match e {
                media::MediaError::InvalidModifiers(invalid) => Failure::Invalid(invalid),
                e @ (media::MediaError::TooManyPixels { .. } | media::MediaError::MemoryLimit) => {
                    Failure::TooLarge(e.to_string())
                }
                e @ (media::MediaError::Unsupported | media::MediaError::Malformed(_)) => {
                    Failure::Undecodable(e.to_string())
                }
                media::MediaError::Encode(message) => Failure::Internal(message),
            }
        })?;
        let bytes = Bytes::from(rendered.bytes);
        match storage.put(&key, bytes.clone()).await {
            Ok(_) => {
                // Deleting a file removes its variants; one stored while the
                // file was being deleted would outlive it.
                if !self.still_active(file_id).await
                    && let Err(e) = storage.delete(&key).await
                {
                    tracing::warn!(error = %e, key, "could not remove an orphaned variant");
                }
            }
            // Served all the same; the next request renders it again.
            Err(e) => tracing::warn!(error = %e, key, "could not store a variant"),
        }
        self.metrics.rendered(started.elapsed());
        Ok(Ready::Rendered(bytes))
    }

    async fn still_active(&self, file_id: String) -> bool {
        use crate::schema::files;
        self.tools
            .db
            .run(move |conn| {
                files::table
                    .find(&file_id)
                    .filter(files::status.eq("active"))
                    .count()
                    .get_result::<i64>(conn)
                    .map_err(StoreError::from)
            })
            .await
            .map_or(true, |n| n > 0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

/// `cdn_transforms_total{outcome}` (`rendered`, `busy`, `timeout`,
/// `failed`), `cdn_transform_duration_seconds` (a rendering from its slot to
/// its output stored), `cdn_variant_requests_total{cache}` (`hit`: served
/// from storage; `miss`: rendered for the request, or waited for).
#[derive(Clone)]
pub struct Metrics {
    transforms: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    requests: Family<CacheLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            transforms: Family::default(),
            // 5 ms … ~41 s
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            requests: Family::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cdn_transforms",
            "Variant renderings by outcome: rendered and stored, busy (no transform slot \
             in time), timeout (a request stopped waiting; the rendering went on), failed",
            self.transforms.clone(),
        );
        registry.register(
            "cdn_transform_duration_seconds",
            "Time of a rendering, from its transform slot to its output stored",
            self.duration.clone(),
        );
        registry.register(
            "cdn_variant_requests",
            "Requests for variants, by whether storage had them (hit) or not (miss)",
            self.requests.clone(),
        );
    }

    fn outcome(&self, outcome: &'static str) {
        self.transforms
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    fn rendered(&self, took: Duration) {
        self.outcome("rendered");
        self.duration.observe(took.as_secs_f64());
    }

    pub fn request(&self, hit: bool) {
        let cache = if hit { "hit" } else { "miss" };
        self.requests.get_or_create(&CacheLabels { cache }).inc();
    }
}
