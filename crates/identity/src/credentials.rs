//! The shapes of API keys, shared by the services that mint them and the
//! gateway that checks them. Every key ends with a checksum of the rest, so a
//! malformed or mistyped key is refused without any look-up.
//!
//! - workspace keys: `key_<shard>.<LOC>.<workspace id>.<secret>`
//! - space keys: `sk_<secret>`
//!
//! where `<secret>` is 32 random base62 characters (≈190 bits) followed by a
//! 6-character checksum of everything before it.

use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;

fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).expect("random bytes");
        // 248 = 4 × 62: rejecting higher bytes keeps the characters uniform.
        out.extend(
            bytes
                .iter()
                .filter(|b| **b < 248)
                .map(|b| ALPHABET[usize::from(*b % 62)] as char)
                .take(len - out.len()),
        );
    }
    out
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let mut n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (0..CHECKSUM_LEN)
        .map(|_| {
            let c = ALPHABET[(n % 62) as usize] as char;
            n /= 62;
            c
        })
        .collect()
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// True when `key` ends with a valid checksum of the rest and its secret part
/// has the expected length and alphabet.
fn checksum_ok(key: &str, secret: &str) -> bool {
    secret.len() == RANDOM_LEN + CHECKSUM_LEN
        && is_base62(secret)
        && key.len() > CHECKSUM_LEN
        && checksum(&key[..key.len() - CHECKSUM_LEN]) == key[key.len() - CHECKSUM_LEN..]
}

fn seal(body: String) -> String {
    let sum = checksum(&body);
    body + &sum
}

/// A workspace API key's visible parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceKey<'a> {
    pub shard: &'a str,
    pub location: &'a str,
    pub workspace_id: &'a str,
}

pub fn new_workspace_key(shard: &str, location: &str, workspace_id: &str) -> String {
    seal(format!(
        "key_{shard}.{location}.{workspace_id}.{}",
        random_base62(RANDOM_LEN)
    ))
}

/// Parses a workspace key, checksum included; `None` for anything malformed.
pub fn parse_workspace_key(key: &str) -> Option<WorkspaceKey<'_>> {
    let rest = key.strip_prefix("key_")?;
    let mut parts = rest.split('.');
    let (shard, location, workspace_id, secret) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let well_formed = parts.next().is_none()
        && valid_shard(shard)
        && valid_location(location)
        && workspace_id.len() <= 64
        && workspace_id.starts_with("wrk_")
        && is_base62(&workspace_id[4..])
        && checksum_ok(key, secret);
    well_formed.then_some(WorkspaceKey {
        shard,
        location,
        workspace_id,
    })
}

pub fn valid_shard(shard: &str) -> bool {
    (1..=8).contains(&shard.len())
        && shard
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

pub fn valid_location(location: &str) -> bool {
    (2..=4).contains(&location.len()) && location.bytes().all(|b| b.is_ascii_uppercase())
}

pub fn new_space_key() -> String {
    seal(format!("sk_{}", random_base62(RANDOM_LEN)))
}

pub fn is_space_key(key: &str) -> bool {
    key.strip_prefix("sk_")
        .is_some_and(|secret| checksum_ok(key, secret))
}

/// What lists show of a key: enough to recognise it, never enough to use it.
pub fn display_prefix(key: &str) -> String {
    let keep = key.len().saturating_sub(RANDOM_LEN + CHECKSUM_LEN) + 4;
    format!("{}…", &key[..keep.min(key.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_keys_round_trip_and_catch_typos() {
        let key = new_workspace_key("01", "UK", "wrk_01JABCDEFGHJKMNPQRSTVWXYZ0");
        let parsed = parse_workspace_key(&key).expect("a fresh key parses");
        assert_eq!(parsed.shard, "01");
        assert_eq!(parsed.location, "UK");
        assert_eq!(parsed.workspace_id, "wrk_01JABCDEFGHJKMNPQRSTVWXYZ0");
        // Every single-character change is caught.
        let bytes = key.as_bytes();
        for i in 0..key.len() {
            let mut changed = bytes.to_vec();
            changed[i] = if changed[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(changed).unwrap();
            if changed != key {
                assert!(parse_workspace_key(&changed).is_none(), "{changed}");
            }
        }
        for bad in [
            "",
            "key_",
            "key_01.UK.wrk_1",
            "key_01.uk.wrk_x.abc",
            "sk_abc",
            &format!("{key}.extra"),
        ] {
            assert!(parse_workspace_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn space_keys_have_checksums_too() {
        let key = new_space_key();
        assert!(is_space_key(&key));
        assert_eq!(key.len(), 3 + 38);
        let mut typo = key.clone().into_bytes();
        typo[10] = if typo[10] == b'x' { b'y' } else { b'x' };
        assert!(!is_space_key(&String::from_utf8(typo).unwrap()));
        assert!(!is_space_key("sk_short"));
        assert_ne!(new_space_key(), key);
    }

    #[test]
    fn prefixes_do_not_reveal_the_secret() {
        let key = new_space_key();
        let prefix = display_prefix(&key);
        assert!(
            prefix.starts_with("sk_") && prefix.chars().count() == 3 + 4 + 1,
            "{prefix}"
        );
    }
}
