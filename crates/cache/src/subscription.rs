use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// Payloads published on one channel, in order. A slow consumer loses the oldest messages
/// (logged) rather than ending the stream, because a revocation listener that silently
/// stopped would be worse than one that missed an event. Both backends hide behind one
/// boxed stream so callers need not care which one they got.
pub struct Subscription {
    messages: BoxStream<'static, Vec<u8>>,
    /// Redis only: the task that owns the pub/sub connection, stopped when this is dropped.
    _forwarder: Option<AbortOnDrop>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next payload; `None` only once the backend can never deliver again.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.messages.next().await
    }

    pub(crate) fn from_broadcast(channel: String, receiver: broadcast::Receiver<Vec<u8>>) -> Self {
        let messages = stream::unfold((channel, receiver), |(channel, mut receiver)| async move {
            loop {
                match receiver.recv().await {
                    Ok(payload) => return Some((payload, (channel, receiver))),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(%channel, skipped, "subscriber lagging; messages dropped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Subscription {
            messages: messages.boxed(),
            _forwarder: None,
        }
    }

    pub(crate) fn from_forwarder(receiver: mpsc::Receiver<Vec<u8>>, task: JoinHandle<()>) -> Self {
        let messages = stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|payload| (payload, receiver))
        });
        Subscription {
            messages: messages.boxed(),
            _forwarder: Some(AbortOnDrop(task)),
        }
    }
}

impl Stream for Subscription {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        self.messages.poll_next_unpin(cx)
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
