//! Shared event plumbing (DESIGN §9): the envelope, the transactional outbox,
//! the event stream (Redis Streams, or in-process in the devstack), the relay
//! that moves the outbox to the stream, and the consumer-group consumer.
//!
//! ```text
//! change + outbox::record ──commit──► outbox table ──Relay──► EventStream ──Consumer──► handler
//!            (one transaction)                (marks published          (consumer group,
//!                                              after the stream          ack on Ok, claim
//!                                              has the entry)            stale on failure)
//! ```
//!
//! Every hop is at-least-once: events are never lost, and may be seen twice
//! around a crash or an outage, so consumers deduplicate by [`Event::id`].
//!
//! # Producing events
//!
//! ```ignore
//! let request_id = service_kit::request_id::current(); // before the transaction
//! db.transaction(move |conn| {
//!     // … the change …
//!     let event = Event::new("booking-service", "booking.cancelled", &booking.id,
//!                            json!({ "booking_id": booking.id, "reason": "no_show" }),
//!                            request_id)
//!         .with_workspace(&booking.workspace_id)
//!         .with_organization(&booking.organization_id);
//!     events::outbox::record(conn, &event)?;
//!     Ok(())
//! }).await?;
//! nudge.nudge(); // wakes this replica's relay
//! ```
//!
//! At start-up each replica starts its relay and keeps the nudge in its state:
//!
//! ```ignore
//! let relay = Relay::new(db.clone(), EventStream::connect(&url).await?, "events:booking-service");
//! let nudge = relay.nudge();
//! relay.spawn();
//! ```
//!
//! # The outbox migration
//!
//! Each producing service copies this migration into its own
//! `migrations/{postgres,sqlite}` folders (the same text is in
//! [`outbox::POSTGRES_UP`], [`outbox::SQLITE_UP`] and [`outbox::DOWN`]).
//! `seq` is the outbox order the relay publishes in; on SQLite it must be the
//! `INTEGER PRIMARY KEY` to be numbered by the database, so `id` is `UNIQUE`
//! there rather than the key. The partial indexes serve the relay's scan
//! ("unpublished, oldest first") and pruning ("published before T").
//!
//! PostgreSQL `up.sql`:
//!
//! ```sql
#![doc = include_str!("../sql/postgres_up.sql")]
//! ```
//!
//! SQLite `up.sql`:
//!
//! ```sql
#![doc = include_str!("../sql/sqlite_up.sql")]
//! ```
//!
//! `down.sql` (both):
//!
//! ```sql
#![doc = include_str!("../sql/down.sql")]
//! ```
//!
//! # Streams
//!
//! [`EventStream::connect`] picks the backend from the URL: `redis://` /
//! `rediss://` for Redis Streams, `memory://NAME` for the process-wide
//! in-process stream the devstack's parts share.

pub mod config;
mod consumer;
mod event;
pub mod outbox;
mod relay;
mod stream;

pub use consumer::Consumer;
pub use event::{EVENT_ID_PREFIX, Event};
pub use relay::{Nudge, PassOutcome, RELAY_LOCK_KEY, Relay, RelayError, RelayMetrics};
pub use stream::{DEFAULT_MAX_LEN, Delivery, EventStream, Lag, StreamError};

/// Defaults of [`Relay::new`] and [`Consumer::new`].
pub mod defaults {
    use std::time::Duration;

    /// Outbox rows per relay pass (and per atomic publish).
    pub const RELAY_BATCH: usize = 100;
    /// Time between relay passes when nothing nudges the relay.
    pub const RELAY_INTERVAL: Duration = Duration::from_secs(1);
    /// How long published rows stay in the outbox.
    pub const RELAY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

    /// Entries per read and per claim.
    pub const CONSUMER_BATCH: usize = 64;
    /// How long a read waits for new entries.
    pub const CONSUMER_BLOCK: Duration = Duration::from_secs(2);
    /// How long an unacknowledged entry stays with its consumer before another
    /// may claim it.
    pub const CONSUMER_MIN_IDLE: Duration = Duration::from_secs(60);
    /// How often a consumer looks for stale entries.
    pub const CONSUMER_CLAIM_INTERVAL: Duration = Duration::from_secs(15);
    /// Pause after a stream error.
    pub const CONSUMER_RETRY_DELAY: Duration = Duration::from_secs(1);
    /// A consumer of the group that has held nothing and done nothing this
    /// long (a replica that went away) is removed from the group.
    pub const CONSUMER_FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
    /// How often a consumer looks for such consumers.
    pub const CONSUMER_FORGET_INTERVAL: Duration = Duration::from_secs(5 * 60);
}
