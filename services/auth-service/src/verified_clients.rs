//! Verified client credentials, remembered. A service principal exchanges the
//! same client id and secret over and over (each client-credentials token,
//! each introspection it makes); each replica checks a pair against the
//! database once per `tokens.client_cache_ttl_secs` and in between answers from
//! memory, with no database read at all.
//!
//! - Only a verification that succeeded is remembered, by a keyed hash of the
//!   client id and secret ([`crate::secrets::Keys::verified_client_tag`]),
//!   never the secret. A wrong secret is never remembered: it goes to the
//!   database and the hash check every time.
//! - A change that voids what is remembered of a principal (its secret
//!   rotated, the principal deleted) drops all its pairs on the replica that
//!   made the change before it answers, and publishes a [`ClientRevocation`]
//!   on the cache bus ([`CHANNEL`]), on which every replica drops them too.
//! - A verification that read the database before such a drop and finishes
//!   after it is not remembered (its [`Ticket`] no longer holds), so a slow
//!   request cannot put back what a revocation took out.
//! - The bus does not promise delivery. A replica that misses a message (Redis
//!   unreachable when it was published, or its subscription reconnecting)
//!   takes the old secret until its memory of the pair expires, at most
//!   `tokens.client_cache_ttl_secs` after the pair was verified. Nothing else
//!   in this memory can go stale: scopes are checked against the deployment's
//!   catalog, which only changes with a restart.

use crate::AuthState;
use crate::config::TokenConfig;
use identity::ScopeSet;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The bus channel (under `cache.bus_prefix`) on which auth-service replicas
/// tell each other to drop remembered client secrets. Apart from the gateways'
/// `revocations` channel: only auth-service replicas have use for these.
pub const CHANNEL: &str = "revocations.service-principals";

/// A message on [`CHANNEL`]: JSON, tagged by `kind` as the platform's
/// revocations are, e.g. `{"kind":"service_principal","id":"spn_…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClientRevocation {
    /// Every remembered secret of the service principal `id`.
    ServicePrincipal { id: String },
}

impl ClientRevocation {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("revocations serialize")
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<ClientRevocation> {
        serde_json::from_slice(bytes).ok()
    }
}

/// What issuing a token needs of a service principal whose secret verified.
#[derive(Debug)]
pub struct VerifiedClient {
    /// `spn_…`
    pub id: String,
    pub workspace_id: String,
    /// The principal's scopes that the deployment grants (scopes it stopped
    /// granting are not honoured).
    pub scopes: ScopeSet,
}

/// A keyed hash of a client id and secret.
pub type Tag = [u8; 32];

/// Taken before a verification reads the database; remembering its result
/// is refused when a drop came in between.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// One replica's memory of verified client credentials: bounded in time and
/// count.
pub struct VerifiedClients {
    ttl: Duration,
    capacity: usize,
    memory: RwLock<Memory>,
    /// Registered as `auth_client_credentials_lookups{result="hit"|"miss"}`.
    lookups: Family<LookupLabels, Counter>,
    hits: Counter,
    misses: Counter,
}

#[derive(Default)]
struct Memory {
    /// Tag → the client, and the instant from which it is no longer good.
    entries: HashMap<Tag, (Arc<VerifiedClient>, Instant)>,
    /// Moves with every drop.
    generation: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    /// `hit`: answered from memory; `miss`: read from the database.
    result: &'static str,
}

impl VerifiedClients {
    /// `ttl` zero: nothing is remembered.
    pub fn new(ttl: Duration, capacity: usize) -> VerifiedClients {
        let lookups = Family::<LookupLabels, Counter>::default();
        let hits = lookups
            .get_or_create(&LookupLabels { result: "hit" })
            .clone();
        let misses = lookups
            .get_or_create(&LookupLabels { result: "miss" })
            .clone();
        VerifiedClients {
            ttl,
            capacity: capacity.max(1),
            memory: RwLock::default(),
            lookups,
            hits,
            misses,
        }
    }

    pub fn from_config(tokens: &TokenConfig) -> VerifiedClients {
        VerifiedClients::new(
            Duration::from_secs(tokens.client_cache_ttl_secs),
            tokens.client_cache_capacity as usize,
        )
    }

    /// Whether anything is remembered at all (`tokens.client_cache_ttl_secs` > 0).
    pub fn is_on(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Registers the lookup counter in the app's `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "auth_client_credentials_lookups",
            "Client id and secret checks while remembering is on, by whether the pair was \
             remembered (hit) or read from the database (miss)",
            self.lookups.clone(),
        );
    }

    /// The client `tag` verified to, while remembered. Counts the lookup.
    pub fn recall(&self, tag: &Tag) -> Option<Arc<VerifiedClient>> {
        let found = self.recall_at(tag, Instant::now());
        if found.is_some() {
            self.hits.inc();
        } else {
            self.misses.inc();
        }
        found
    }

    fn recall_at(&self, tag: &Tag, now: Instant) -> Option<Arc<VerifiedClient>> {
        if !self.is_on() {
            return None;
        }
        let memory = self.memory.read().unwrap_or_else(|e| e.into_inner());
        match memory.entries.get(tag) {
            Some((client, until)) if now < *until => Some(client.clone()),
            _ => None,
        }
    }

    /// Take one before reading the database for a verification.
    pub fn ticket(&self) -> Ticket {
        Ticket(
            self.memory
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .generation,
        )
    }

    /// Remembers a verification that succeeded, unless a drop happened since
    /// `ticket` was taken (then what was read may be what the drop voided).
    pub fn remember(&self, ticket: Ticket, tag: Tag, client: Arc<VerifiedClient>) {
        self.remember_at(ticket, tag, client, Instant::now());
    }

    fn remember_at(&self, ticket: Ticket, tag: Tag, client: Arc<VerifiedClient>, now: Instant) {
        if !self.is_on() {
            return;
        }
        let mut memory = self.memory.write().unwrap_or_else(|e| e.into_inner());
        if memory.generation != ticket.0 {
            return;
        }
        if !memory.entries.contains_key(&tag) && memory.entries.len() >= self.capacity {
            memory.make_room(self.capacity, now);
        }
        memory.entries.insert(tag, (client, now + self.ttl));
    }

    /// Drops every remembered secret of the service principal `id`.
    pub fn forget(&self, id: &str) {
        let mut memory = self.memory.write().unwrap_or_else(|e| e.into_inner());
        memory.generation += 1;
        memory.entries.retain(|_, (client, _)| client.id != id);
    }

    /// Applies the revocations published on the bus, by any replica, for as
    /// long as the service runs.
    pub async fn listen(self: Arc<Self>, cache: &cache::Cache) -> anyhow::Result<()> {
        let mut subscription = cache.subscribe(CHANNEL).await?;
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                match ClientRevocation::from_bytes(&message) {
                    Some(ClientRevocation::ServicePrincipal { id }) => self.forget(&id),
                    None => tracing::warn!(channel = CHANNEL, "ignoring a malformed message"),
                }
            }
        });
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.memory.read().unwrap().entries.len()
    }
}

impl Memory {
    /// Expired entries go; if that is not enough, the oldest sixteenth (one
    /// TTL for all: the first to expire are the oldest), so that a full memory
    /// does not sort itself on every store.
    fn make_room(&mut self, capacity: usize, now: Instant) {
        self.entries.retain(|_, (_, until)| now < *until);
        if self.entries.len() < capacity {
            return;
        }
        let mut expiries: Vec<Instant> = self.entries.values().map(|(_, until)| *until).collect();
        let cut = expiries.len() / 16;
        let (_, oldest_kept, _) = expiries.select_nth_unstable(cut);
        let threshold = *oldest_kept;
        self.entries.retain(|_, (_, until)| *until > threshold);
    }
}

impl AuthState {
    /// After a change that voids what replicas remember of service principal
    /// `id`: drops it here, then tells every other replica. A failure to
    /// publish is logged; the other replicas then take the old secret until
    /// their memory of it expires (`tokens.client_cache_ttl_secs`).
    pub(crate) async fn revoke_client_secrets(&self, id: &str) {
        self.clients.forget(id);
        let message = ClientRevocation::ServicePrincipal { id: id.to_owned() };
        if let Err(e) = self.cache.publish(CHANNEL, &message.to_bytes()).await {
            tracing::error!(
                error = %e,
                principal = id,
                "could not publish a client revocation: other replicas take the old secret \
                 until their memory of it expires"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> Arc<VerifiedClient> {
        Arc::new(VerifiedClient {
            id: id.into(),
            workspace_id: "wrk_1".into(),
            scopes: ScopeSet::parse("bookings:read").unwrap(),
        })
    }

    fn tag(n: u8) -> Tag {
        [n; 32]
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn remembers_until_the_ttl_runs_out() {
        let memory = VerifiedClients::new(MINUTE, 10);
        let now = Instant::now();
        assert!(memory.recall_at(&tag(1), now).is_none());
        memory.remember_at(memory.ticket(), tag(1), client("spn_a"), now);
        let recalled = memory.recall_at(&tag(1), now + MINUTE - Duration::from_millis(1));
        assert_eq!(recalled.unwrap().id, "spn_a");
        assert!(memory.recall_at(&tag(2), now).is_none(), "another pair");
        assert!(memory.recall_at(&tag(1), now + MINUTE).is_none(), "expired");
    }

    #[test]
    fn a_zero_ttl_remembers_nothing() {
        let memory = VerifiedClients::new(Duration::ZERO, 10);
        assert!(!memory.is_on());
        let now = Instant::now();
        memory.remember_at(memory.ticket(), tag(1), client("spn_a"), now);
        assert_eq!(memory.len(), 0);
        assert!(memory.recall_at(&tag(1), now).is_none());
    }

    #[test]
    fn forgetting_a_principal_drops_each_of_its_secrets_only() {
        let memory = VerifiedClients::new(MINUTE, 10);
        let now = Instant::now();
        // Two secrets of one principal (say, one verified just before a rotation).
        memory.remember_at(memory.ticket(), tag(1), client("spn_a"), now);
        memory.remember_at(memory.ticket(), tag(2), client("spn_a"), now);
        memory.remember_at(memory.ticket(), tag(3), client("spn_b"), now);
        memory.forget("spn_a");
        assert!(memory.recall_at(&tag(1), now).is_none());
        assert!(memory.recall_at(&tag(2), now).is_none());
        assert_eq!(memory.recall_at(&tag(3), now).unwrap().id, "spn_b");
    }

    #[test]
    fn a_verification_overtaken_by_a_drop_is_not_remembered() {
        let memory = VerifiedClients::new(MINUTE, 10);
        let now = Instant::now();
        // The database was read (the old secret verified) ...
        let ticket = memory.ticket();
        // ... then the secret was rotated and the drop arrived ...
        memory.forget("spn_a");
        // ... and only then the verification finished.
        memory.remember_at(ticket, tag(1), client("spn_a"), now);
        assert!(memory.recall_at(&tag(1), now).is_none());
        // A verification that started after the drop is remembered.
        memory.remember_at(memory.ticket(), tag(1), client("spn_a"), now);
        assert!(memory.recall_at(&tag(1), now).is_some());
    }

    #[test]
    fn a_full_memory_drops_the_expired_then_the_oldest() {
        let memory = VerifiedClients::new(MINUTE, 4);
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        for n in 0..4 {
            memory.remember_at(memory.ticket(), tag(n), client("spn_a"), at(u64::from(n)));
        }
        assert_eq!(memory.len(), 4);
        // Renewing a remembered pair takes no room.
        memory.remember_at(memory.ticket(), tag(3), client("spn_a"), at(3));
        assert_eq!(memory.len(), 4);
        // At 60 s the first has expired: it makes the room.
        memory.remember_at(memory.ticket(), tag(9), client("spn_a"), at(60));
        assert_eq!(memory.len(), 4);
        assert!(memory.recall_at(&tag(0), at(60)).is_none());
        for n in [1, 2, 3, 9] {
            assert!(memory.recall_at(&tag(n), at(60)).is_some(), "{n}");
        }
        // Full of live ones: the oldest goes.
        memory.remember_at(memory.ticket(), tag(10), client("spn_a"), at(60));
        assert_eq!(memory.len(), 4);
        assert!(memory.recall_at(&tag(1), at(60)).is_none());
        for n in [2, 3, 9, 10] {
            assert!(memory.recall_at(&tag(n), at(60)).is_some(), "{n}");
        }
    }

    #[test]
    fn lookups_are_counted() {
        let memory = VerifiedClients::new(MINUTE, 4);
        memory.remember(memory.ticket(), tag(1), client("spn_a"));
        assert!(memory.recall(&tag(1)).is_some());
        assert!(memory.recall(&tag(2)).is_none());
        assert!(memory.recall(&tag(1)).is_some());
        assert_eq!((memory.hits.get(), memory.misses.get()), (2, 1));
    }

    #[test]
    fn wire_form() {
        let message = ClientRevocation::ServicePrincipal { id: "spn_1".into() };
        assert_eq!(
            String::from_utf8(message.to_bytes()).unwrap(),
            r#"{"kind":"service_principal","id":"spn_1"}"#
        );
        assert_eq!(
            ClientRevocation::from_bytes(&message.to_bytes()),
            Some(message)
        );
        assert_eq!(
            ClientRevocation::from_bytes(b"{\"kind\":\"session\"}"),
            None
        );
    }
}
