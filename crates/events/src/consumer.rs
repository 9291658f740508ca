//! The consumer: one member of a consumer group, handing each entry to an async
//! handler and acknowledging it when the handler succeeds.
//!
//! Delivery is at-least-once. An entry whose handler failed stays pending and
//! is claimed again (by this or another consumer of the group) once it has been
//! idle for `min_idle`; so is every entry a consumer held when it died. An entry
//! handled but not yet acknowledged when the process stops is handled again:
//! handlers deduplicate by event id.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;

use crate::defaults;
use crate::stream::{Delivery, EventStream, StreamError};

/// A member of a consumer group. Replicas share the work by using the same
/// `group` with different `consumer_name`s (a pod name, say). A restarted
/// replica may keep its name: what it held is claimed back after `min_idle`.
pub struct Consumer {
    pub stream: EventStream,
    pub stream_name: String,
    pub group: String,
    pub consumer_name: String,
    /// Entries per read (and per claim).
    pub batch: usize,
    /// How long a read waits for new entries.
    pub block: Duration,
    /// How long an entry stays with a consumer that does not acknowledge it
    /// before another may claim it. Longer than the slowest handler run.
    pub min_idle: Duration,
    /// How often to look for stale entries.
    pub claim_interval: Duration,
    /// Pause after a stream error before trying again.
    pub retry_delay: Duration,
    /// Other consumers of the group idle this long with nothing pending are
    /// removed from it (checked every `defaults::CONSUMER_FORGET_INTERVAL`).
    pub forget_after: Duration,
}

impl Consumer {
    pub fn new(
        stream: EventStream,
        stream_name: impl Into<String>,
        group: impl Into<String>,
        consumer_name: impl Into<String>,
    ) -> Consumer {
        Consumer {
            stream,
            stream_name: stream_name.into(),
            group: group.into(),
            consumer_name: consumer_name.into(),
            batch: defaults::CONSUMER_BATCH,
            block: defaults::CONSUMER_BLOCK,
            min_idle: defaults::CONSUMER_MIN_IDLE,
            claim_interval: defaults::CONSUMER_CLAIM_INTERVAL,
            retry_delay: defaults::CONSUMER_RETRY_DELAY,
            forget_after: defaults::CONSUMER_FORGET_AFTER,
        }
    }

    /// Consumes until `shutdown` resolves: creates the group if needed, claims
    /// stale entries every `claim_interval` (those first), reads new ones, calls
    /// `handler` for each delivery in order, and acknowledges those it returned
    /// `Ok` for. A handler error is logged and leaves the entry pending.
    ///
    /// Shutdown is checked between batches and while waiting for the stream; a
    /// handler that is running is let finish. `shutdown` can be any future:
    /// `service_kit::server::shutdown_signal()`, or
    /// `async move { let _ = stop_rx.changed().await; }` over a
    /// `tokio::sync::watch` channel.
    pub async fn run<H, Fut, E>(&self, mut handler: H, shutdown: impl Future<Output = ()>)
    where
        H: FnMut(Delivery) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut state = LoopState::new();
        while let Some(deliveries) = self.next_batch(&mut state, shutdown.as_mut()).await {
            self.handle(&mut handler, deliveries).await;
        }
    }

    /// Like [`Consumer::run`], but hands each batch (claimed or read: up to
    /// `batch` entries, never empty) to `handler` at once, in stream order, and
    /// acknowledges the whole batch when it returns `Ok`. An error is logged
    /// and leaves every entry of the batch pending, to be claimed again after
    /// `min_idle`: the handler must commit the batch atomically (or be
    /// idempotent per event id), as with `run`.
    pub async fn run_batches<H, Fut, E>(&self, mut handler: H, shutdown: impl Future<Output = ()>)
    where
        H: FnMut(Vec<Delivery>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut state = LoopState::new();
        while let Some(deliveries) = self.next_batch(&mut state, shutdown.as_mut()).await {
            if deliveries.is_empty() {
                continue;
            }
            let entry_ids: Vec<String> = deliveries.iter().map(|d| d.entry_id.clone()).collect();
            match handler(deliveries).await {
                Ok(()) => self.ack(&entry_ids).await,
                Err(error) => {
                    tracing::warn!(stream = %self.stream_name, group = %self.group,
                        entries = entry_ids.len(), first_entry = %entry_ids[0], %error,
                        "event batch handler failed; the entries stay pending and are retried");
                }
            }
        }
    }

    /// The next batch to handle (possibly empty: the read timed out), or
    /// `None` once `shutdown` resolved. Stream errors are logged and retried
    /// after `retry_delay`.
    async fn next_batch<S>(
        &self,
        state: &mut LoopState,
        mut shutdown: std::pin::Pin<&mut futures_util::future::Fuse<S>>,
    ) -> Option<Vec<Delivery>>
    where
        S: Future<Output = ()>,
    {
        loop {
            if shutdown.as_mut().now_or_never().is_some() {
                return None;
            }
            let step = async {
                if !state.group_ready {
                    self.stream
                        .ensure_group(&self.stream_name, &self.group)
                        .await?;
                    state.group_ready = true;
                }
                let now = Instant::now();
                if now >= state.next_claim {
                    let claimed = self
                        .stream
                        .claim_stale(
                            &self.stream_name,
                            &self.group,
                            &self.consumer_name,
                            self.min_idle,
                            self.batch,
                        )
                        .await?;
                    // A full batch: there may be more; claim again next round.
                    state.next_claim = if claimed.len() >= self.batch.max(1) {
                        now
                    } else {
                        now + self.claim_interval
                    };
                    if !claimed.is_empty() {
                        tracing::info!(stream = %self.stream_name, group = %self.group,
                            consumer = %self.consumer_name, claimed = claimed.len(),
                            "claimed stale entries");
                        return Ok(claimed);
                    }
                }
                if now >= state.next_forget {
                    state.next_forget = now + defaults::CONSUMER_FORGET_INTERVAL;
                    self.forget_idle_consumers().await;
                }
                // Wake up in time for the next claim.
                let block = self
                    .block
                    .min(state.next_claim.saturating_duration_since(Instant::now()));
                self.stream
                    .read(
                        &self.stream_name,
                        &self.group,
                        &self.consumer_name,
                        self.batch,
                        block,
                    )
                    .await
            };
            let deliveries = tokio::select! {
                biased;
                () = &mut shutdown => return None,
                result = step => result,
            };
            match deliveries {
                Ok(deliveries) => return Some(deliveries),
                Err(error) => {
                    if matches!(error, StreamError::NoGroup(_)) {
                        state.group_ready = false;
                    }
                    tracing::warn!(stream = %self.stream_name, group = %self.group,
                        consumer = %self.consumer_name, %error, "event stream read failed; retrying");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => return None,
                        () = tokio::time::sleep(self.retry_delay) => {}
                    }
                }
            }
        }
    }

    /// Removes the group's long-idle consumers that hold nothing (replicas
    /// that went away); a failure is only logged, and tried again later.
    async fn forget_idle_consumers(&self) {
        match self
            .stream
            .forget_idle_consumers(
                &self.stream_name,
                &self.group,
                &self.consumer_name,
                self.forget_after,
            )
            .await
        {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(stream = %self.stream_name, group = %self.group,
                forgotten, "removed consumers idle with nothing pending from the group"),
            Err(error) => tracing::warn!(stream = %self.stream_name, group = %self.group,
                %error, "could not look for idle consumers"),
        }
    }

    /// One XACK for `entry_ids`. If it fails, the entries stay pending and are
    /// handled again after `min_idle`: at-least-once, never lost.
    async fn ack(&self, entry_ids: &[String]) {
        if let Err(error) = self
            .stream
            .ack(&self.stream_name, &self.group, entry_ids)
            .await
        {
            tracing::warn!(stream = %self.stream_name, group = %self.group, %error,
                "acknowledging handled entries failed; they will be handled again");
        }
    }

    async fn handle<H, Fut, E>(&self, handler: &mut H, deliveries: Vec<Delivery>)
    where
        H: FnMut(Delivery) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut handled = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let entry_id = delivery.entry_id.clone();
            let event_id = delivery.event.id.clone();
            match handler(delivery).await {
                Ok(()) => handled.push(entry_id),
                Err(error) => {
                    tracing::warn!(stream = %self.stream_name, group = %self.group,
                        %entry_id, %event_id, %error,
                        "event handler failed; the entry stays pending and is retried");
                }
            }
        }
        self.ack(&handled).await;
    }
}

/// Where a consumer loop stands between batches.
struct LoopState {
    group_ready: bool,
    next_claim: Instant,
    next_forget: Instant,
}

impl LoopState {
    fn new() -> LoopState {
        LoopState {
            group_ready: false,
            next_claim: Instant::now(),
            next_forget: Instant::now(),
        }
    }
}
