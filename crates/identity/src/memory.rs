//! Tokens that verified, remembered until they expire: a verifier sees the
//! same token string many times (the gateway reuses an identity token for half
//! its life, a client sends one access token for an hour), and a repeat then
//! costs a SHA-256 and a look-up instead of an Ed25519 check. Only the exact
//! string matches: the key is its SHA-256.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// SHA-256 of a token → what it verified to, and the unix second from which
/// it is no longer good.
type Entries<T> = HashMap<[u8; 32], (T, u64)>;

/// Clones share the memory.
#[derive(Clone)]
pub(crate) struct VerifiedTokens<T> {
    entries: Arc<RwLock<Entries<T>>>,
    /// Beyond it the expired entries go, or else all.
    capacity: usize,
}

impl<T: Clone> VerifiedTokens<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        VerifiedTokens {
            entries: Arc::default(),
            capacity,
        }
    }

    /// What `token` verified to, if it did and is still good; else its digest,
    /// for [`VerifiedTokens::remember`].
    pub(crate) fn recall(&self, token: &str) -> Result<T, [u8; 32]> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        match entries.get(&digest) {
            Some((value, until)) if now_secs() < *until => Ok(value.clone()),
            _ => Err(digest),
        }
    }

    /// Remembers a token that verified, good until the unix second `until`.
    pub(crate) fn remember(&self, digest: [u8; 32], value: T, until: u64) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            let now = now_secs();
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(digest, (value, until));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.read().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_strings_until_they_expire_and_a_bounded_count() {
        let memory = VerifiedTokens::new(2);
        let now = now_secs();
        let digest = memory.recall("a").unwrap_err();
        memory.remember(digest, 1, now + 60);
        assert_eq!(memory.recall("a"), Ok(1));
        assert!(memory.recall("a ").is_err());
        memory.remember(memory.recall("stale").unwrap_err(), 2, now);
        assert!(
            memory.recall("stale").is_err(),
            "good until `now` is gone now"
        );
        // Full: the stale entry makes room.
        memory.remember(memory.recall("b").unwrap_err(), 3, now + 60);
        assert_eq!(memory.len(), 2);
        assert_eq!((memory.recall("a"), memory.recall("b")), (Ok(1), Ok(3)));
        // Full of good ones: it starts afresh.
        memory.remember(memory.recall("c").unwrap_err(), 4, now + 60);
        assert_eq!(memory.len(), 1);
        assert_eq!(memory.recall("c"), Ok(4));
    }
}
