//! What the gateway remembers of a credential it has admitted, so that a
//! client's next request with the same credential costs a look-up:
//!
//! - an [`Admission`] is the identity a credential stands for, with the
//!   identity tokens signed for it so far (one per upstream service, reused
//!   for half its lifetime, kept as the header value the proxy sends);
//! - [`Admitted`] remembers admissions: each bearer token's by the exact
//!   token string, until the token expires, as long as the key set it was
//!   verified against is in force; each API key's by the hash its
//!   introspection is cached under, until that answer's cache time is up.
//!   Revocations are not looked up again on every request: each entry
//!   remembers the count of revocations received when it was last checked,
//!   and is checked again only once another has arrived.
//! - an admission also remembers itself acting in other workspaces
//!   (`x-workspace-key`): the admission there, until the membership answer
//!   it came from would leave the shared cache, checked again when a
//!   revocation has arrived since.

use identity::{Identity, IdentitySigner};
use reqwest::header::HeaderValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who a request's credential stands for, and the identity tokens signed for
/// that identity so far.
pub struct Admission {
    pub identity: Identity,
    signed: Mutex<Vec<Signed>>,
    /// The principal's rate-limit bucket on this replica, once looked up.
    pub(crate) budget: crate::rate_limits::Budget,
    /// The same credential acting in other workspaces.
    acting: Mutex<Vec<Acting>>,
}

/// An admission acting in another workspace (`x-workspace-key`).
struct Acting {
    workspace: Box<str>,
    admission: Arc<Admission>,
    /// When the membership answer it came from was fetched (unix seconds):
    /// a change of the membership since makes it stale.
    fetched_at: u64,
    /// Unix second from which it is not used.
    good_until: u64,
    /// The revocation count when it was last checked.
    checked: u64,
}

/// Workspaces an admission remembers acting in; past this, the oldest goes.
const ACTING_MAX: usize = 16;

/// An identity token for one audience, as the header value sent upstream.
struct Signed {
    audience: String,
    value: HeaderValue,
    /// Unix second from which the signer would sign a new one.
    reuse_until: u64,
}

impl Admission {
    pub fn new(identity: Identity) -> Arc<Admission> {
        Arc::new(Admission {
            identity,
            signed: Mutex::new(Vec::new()),
            budget: Default::default(),
            acting: Mutex::new(Vec::new()),
        })
    }

    /// The remembered admission of this credential acting in `workspace`,
    /// unless its time is up or, when a revocation has arrived since it was
    /// last checked (`revocations` is the count now), `changed(fetched_at)`
    /// says the membership it came from changed since.
    pub(crate) fn acting_in(
        &self,
        workspace: &str,
        revocations: u64,
        changed: impl FnOnce(u64) -> bool,
    ) -> Option<Arc<Admission>> {
        let mut acting = self.acting.lock().unwrap_or_else(|e| e.into_inner());
        let at = acting.iter().position(|a| &*a.workspace == workspace)?;
        let entry = &mut acting[at];
        let stale = entry.good_until <= now_secs()
            || (entry.checked != revocations && changed(entry.fetched_at));
        if stale {
            acting.swap_remove(at);
            return None;
        }
        entry.checked = revocations;
        Some(entry.admission.clone())
    }

    /// Remembers `admission` as this credential acting in `workspace`:
    /// from a membership answer fetched at `fetched_at`, good until
    /// `good_until`, checked against the revocations counted `revocations`
    /// (read before the membership was looked up).
    pub(crate) fn remember_acting(
        &self,
        workspace: &str,
        admission: Arc<Admission>,
        (fetched_at, good_until): (u64, u64),
        revocations: u64,
    ) {
        let now = now_secs();
        let mut acting = self.acting.lock().unwrap_or_else(|e| e.into_inner());
        acting.retain(|a| &*a.workspace != workspace && a.good_until > now);
        if acting.len() >= ACTING_MAX {
            acting.remove(0);
        }
        acting.push(Acting {
            workspace: workspace.into(),
            admission,
            fetched_at,
            good_until,
            checked: revocations,
        });
    }

    /// The identity token telling `audience` who is calling, as a header
    /// value: signed (or taken from the signer's cache) once, then reused
    /// while the signer would reuse it.
    pub fn token_for(&self, signer: &IdentitySigner, audience: &str) -> Option<HeaderValue> {
        let now = now_secs();
        let mut signed = self.signed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = signed.iter().find(|s| s.audience == audience)
            && now < s.reuse_until
        {
            return Some(s.value.clone());
        }
        let (token, reuse_until) = signer.token_reused_until(&self.identity, audience);
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::from(token)).ok()?;
        signed.retain(|s| s.audience != audience);
        signed.push(Signed {
            audience: audience.to_owned(),
            value: value.clone(),
            reuse_until,
        });
        Some(value)
    }
}

/// What the revocation checks of a credential need: a bearer token's
/// session, workspace, subject and issue time, or an API key's id.
#[derive(Debug, Clone, Default)]
pub(crate) struct RevocationSubject {
    pub sid: Option<String>,
    pub workspace: Option<String>,
    pub subject: String,
    pub issued_at: u64,
    pub key_id: Option<String>,
}

/// Keyed by a whole bearer token (hundreds of bytes), looked up on every
/// request: hashed with foldhash, which is several times faster than the
/// standard SipHash over such keys. Its flooding resistance is not needed:
/// only credentials that passed verification are ever inserted.
#[derive(Default)]
struct Entries {
    by_credential: HashMap<Box<str>, Entry, foldhash::fast::RandomState>,
    /// Entries remembered since expired ones were last swept out.
    since_sweep: usize,
}

/// Expired entries are swept out after this many new ones (and whenever the
/// memory is full), so they do not linger holding their rate-limit buckets.
const SWEEP_EVERY: usize = 1024;

struct Entry {
    admission: Arc<Admission>,
    /// The token's `exp`: it is not recognised from then on.
    expires: u64,
    /// The key set generation it was verified under.
    keys: u64,
    subject: RevocationSubject,
    /// The revocation count when its revocations were last checked.
    checked: AtomicU64,
}

/// Admissions by credential (a bearer token's string, an API key's hash).
pub(crate) struct Admitted {
    entries: RwLock<Entries>,
    capacity: usize,
    /// Bumped when the key set changes: every entry is then stale.
    keys: AtomicU64,
    /// Bumped by every revocation received.
    revocations: AtomicU64,
}

/// A remembered token whose revocations need checking again.
pub(crate) enum Recall {
    Unknown,
    Admitted(Arc<Admission>),
    /// Revocations arrived since it was checked: `check` them, then
    /// [`Admitted::checked`].
    Recheck(RevocationSubject, u64),
}

impl Admitted {
    pub fn new(capacity: usize) -> Admitted {
        Admitted {
            entries: RwLock::new(Entries::default()),
            capacity,
            keys: AtomicU64::new(0),
            revocations: AtomicU64::new(0),
        }
    }

    /// The generations to pass to [`Admitted::remember`], read before the
    /// token is verified and checked, so a change meanwhile makes the entry
    /// stale rather than wrongly fresh.
    pub fn generations(&self) -> (u64, u64) {
        (
            self.keys.load(Ordering::Acquire),
            self.revocations.load(Ordering::Acquire),
        )
    }

    pub fn recall(&self, token: &str) -> Recall {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = entries.by_credential.get(token) else {
            return Recall::Unknown;
        };
        if now_secs() >= entry.expires || entry.keys != self.keys.load(Ordering::Acquire) {
            return Recall::Unknown;
        }
        let revocations = self.revocations.load(Ordering::Acquire);
        if entry.checked.load(Ordering::Acquire) != revocations {
            return Recall::Recheck(entry.subject.clone(), revocations);
        }
        Recall::Admitted(entry.admission.clone())
    }

    /// A recheck found the token still good as of `revocations`.
    pub fn checked(&self, token: &str, revocations: u64) -> Option<Arc<Admission>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let entry = entries.by_credential.get(token)?;
        entry.checked.fetch_max(revocations, Ordering::AcqRel);
        Some(entry.admission.clone())
    }

    pub fn remember(
        &self,
        token: &str,
        admission: Arc<Admission>,
        expires: u64,
        subject: RevocationSubject,
        (keys, revocations): (u64, u64),
    ) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let entries = &mut *entries;
        if entries.by_credential.len() >= self.capacity || entries.since_sweep >= SWEEP_EVERY {
            let now = now_secs();
            entries.by_credential.retain(|_, e| now < e.expires);
            entries.since_sweep = 0;
            if entries.by_credential.len() >= self.capacity {
                entries.by_credential.clear();
            }
        }
        entries.since_sweep += 1;
        entries.by_credential.insert(
            token.into(),
            Entry {
                admission,
                expires,
                keys,
                subject,
                checked: AtomicU64::new(revocations),
            },
        );
    }

    /// A new key set: nothing verified under the old one is recognised.
    pub fn keys_changed(&self) {
        self.keys.fetch_add(1, Ordering::AcqRel);
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .by_credential
            .clear();
    }

    /// A revocation arrived (after it is recorded where checks look).
    pub fn revoked(&self) {
        self.revocations.fetch_add(1, Ordering::AcqRel);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.read().unwrap().by_credential.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::{PrincipalType, ScopeSet};

    fn user(id: &str) -> Arc<Admission> {
        Admission::new(Identity {
            principal_id: id.into(),
            principal_type: PrincipalType::User,
            workspace_id: None,
            scopes: ScopeSet::empty(),
            space_id: None,
            organization_id: None,
        })
    }

    fn subject() -> RevocationSubject {
        RevocationSubject {
            sid: Some("ses_1".into()),
            workspace: None,
            subject: "usr_1".into(),
            issued_at: 1,
            key_id: None,
        }
    }

    #[test]
    fn acting_in_a_workspace_is_remembered_until_its_time_or_a_changed_membership() {
        let base = user("usr_1");
        let now = now_secs();
        let acting = user("usr_1");
        base.remember_acting("wrk_a", acting.clone(), (now, now + 60), 7);
        let same = |revocations, changed: bool| {
            base.acting_in("wrk_a", revocations, |fetched_at| {
                assert_eq!(fetched_at, now);
                changed
            })
        };
        // No revocation since: the membership is not asked about.
        let recalled = base.acting_in("wrk_a", 7, |_| panic!("checked without a revocation"));
        assert!(Arc::ptr_eq(&recalled.unwrap(), &acting));
        assert!(base.acting_in("wrk_b", 7, |_| false).is_none());
        // A revocation of something else: checked once, kept.
        assert!(same(8, false).is_some());
        assert!(
            base.acting_in("wrk_a", 8, |_| panic!("checked twice"))
                .is_some()
        );
        // The membership changed: gone.
        assert!(same(9, true).is_none());
        assert!(base.acting_in("wrk_a", 9, |_| false).is_none());
        // Past its time: gone.
        base.remember_acting("wrk_a", acting, (now - 120, now - 60), 9);
        assert!(base.acting_in("wrk_a", 9, |_| false).is_none());
    }

    #[test]
    fn an_admission_remembers_a_bounded_number_of_workspaces() {
        let base = user("usr_1");
        let now = now_secs();
        for i in 0..ACTING_MAX + 1 {
            base.remember_acting(&format!("wrk_{i}"), user("usr_1"), (now, now + 60), 0);
        }
        assert_eq!(base.acting.lock().unwrap().len(), ACTING_MAX);
        assert!(
            base.acting_in("wrk_0", 0, |_| false).is_none(),
            "the oldest went"
        );
        assert!(
            base.acting_in(&format!("wrk_{ACTING_MAX}"), 0, |_| false)
                .is_some()
        );
    }

    #[test]
    fn tokens_are_recalled_exactly_until_they_expire_or_the_keys_change() {
        let admitted = Admitted::new(10);
        let now = now_secs();
        admitted.remember(
            "tok",
            user("usr_1"),
            now + 60,
            subject(),
            admitted.generations(),
        );
        admitted.remember("old", user("usr_2"), now, subject(), admitted.generations());
        assert!(
            matches!(admitted.recall("tok"), Recall::Admitted(a) if a.identity.principal_id == "usr_1")
        );
        assert!(matches!(admitted.recall("tok "), Recall::Unknown));
        assert!(
            matches!(admitted.recall("old"), Recall::Unknown),
            "expired at `now`"
        );
        // Remembered under a key set that was replaced meanwhile: stale.
        let before = admitted.generations();
        admitted.keys_changed();
        admitted.remember("late", user("usr_3"), now + 60, subject(), before);
        assert!(matches!(admitted.recall("tok"), Recall::Unknown));
        assert!(matches!(admitted.recall("late"), Recall::Unknown));
    }

    #[test]
    fn a_revocation_makes_every_entry_checked_again_once() {
        let admitted = Admitted::new(10);
        let generations = admitted.generations();
        admitted.remember(
            "tok",
            user("usr_1"),
            now_secs() + 60,
            subject(),
            generations,
        );
        admitted.revoked();
        let Recall::Recheck(rechecked, count) = admitted.recall("tok") else {
            panic!("a revocation arrived since the check");
        };
        assert_eq!(rechecked.sid.as_deref(), Some("ses_1"));
        assert!(admitted.checked("tok", count).is_some());
        assert!(matches!(admitted.recall("tok"), Recall::Admitted(_)));
        // Remembered with the count read before a revocation landed: checked again.
        let before = admitted.generations();
        admitted.revoked();
        admitted.remember("new", user("usr_2"), now_secs() + 60, subject(), before);
        assert!(matches!(admitted.recall("new"), Recall::Recheck(..)));
    }

    #[test]
    fn expired_entries_are_swept_out_as_new_ones_come() {
        let admitted = Admitted::new(10 * SWEEP_EVERY);
        let now = now_secs();
        admitted.remember("old", user("usr_1"), now, subject(), admitted.generations());
        for i in 0..SWEEP_EVERY {
            let token = format!("tok{i}");
            admitted.remember(
                &token,
                user("usr_2"),
                now + 60,
                subject(),
                admitted.generations(),
            );
        }
        assert_eq!(admitted.len(), SWEEP_EVERY, "the expired one is gone");
    }

    #[test]
    fn the_count_is_bounded() {
        let admitted = Admitted::new(2);
        let later = now_secs() + 60;
        for token in ["a", "b", "c"] {
            admitted.remember(token, user(token), later, subject(), admitted.generations());
        }
        assert_eq!(admitted.len(), 1, "full of good ones: it starts afresh");
        assert!(matches!(admitted.recall("c"), Recall::Admitted(_)));
    }

    #[test]
    fn identity_tokens_are_kept_per_audience_as_header_values() {
        let signer = IdentitySigner::new(
            identity::SigningKey::generate().unwrap(),
            std::time::Duration::from_secs(60),
        );
        let admission = user("usr_1");
        let booking = admission.token_for(&signer, "booking-service").unwrap();
        let spaces = admission.token_for(&signer, "spaces-service").unwrap();
        assert_ne!(booking, spaces);
        assert_eq!(
            admission.token_for(&signer, "booking-service"),
            Some(booking.clone())
        );
        let verifier = identity::IdentityVerifier::new("booking-service", signer.public_keys());
        let seen = verifier.verify(booking.to_str().unwrap()).unwrap();
        assert_eq!(seen, admission.identity);
    }
}
