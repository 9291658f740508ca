//! Space handles: six lowercase letters or digits, unique across all
//! workspaces (they name a space in public URLs).

use crate::schema::{space_purges, spaces};
use diesel::prelude::*;
use store::{DbConnection, StoreError};

pub const LENGTH: usize = 6;
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Fresh handles tried before giving up; with 36⁶ ≈ 2.2 billion handles a
/// second one is almost never needed.
const ATTEMPTS: usize = 8;

/// A random handle.
pub fn generate() -> String {
    let mut out = String::with_capacity(LENGTH);
    while out.len() < LENGTH {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("random bytes");
        // 252 = 7 × 36: rejecting higher bytes keeps the characters uniform.
        out.extend(
            bytes
                .iter()
                .filter(|b| **b < 252)
                .map(|b| ALPHABET[usize::from(*b % 36)] as char)
                .take(LENGTH - out.len()),
        );
    }
    out
}

pub fn is_handle(candidate: &str) -> bool {
    candidate.len() == LENGTH
        && candidate
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The first of `candidates` no space has yet, looked up inside the caller's
/// transaction. The unique constraint still guards against a concurrent
/// writer on PostgreSQL; the caller retries the transaction when it fires.
pub fn pick_free(
    conn: &mut DbConnection,
    candidates: impl IntoIterator<Item = String>,
) -> Result<Option<String>, StoreError> {
    for candidate in candidates.into_iter().take(ATTEMPTS) {
        let taken: i64 = spaces::table
            .filter(spaces::handle.eq(&candidate))
            .count()
            .get_result(conn)?;
        // A deleted space keeps its handle (and object prefix) until purged.
        let purging: i64 = space_purges::table
            .filter(space_purges::handle.eq(&candidate))
            .count()
            .get_result(conn)?;
        if taken + purging == 0 {
            return Ok(Some(candidate));
        }
        tracing::info!("space handle collision; trying another");
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_six_lowercase_alphanumerics() {
        let all: std::collections::HashSet<String> = (0..200).map(|_| generate()).collect();
        assert!(all.len() > 190, "random");
        assert!(all.iter().all(|h| is_handle(h)));
        assert!(!is_handle("ABCDEF") && !is_handle("abc") && !is_handle("abc-ef"));
    }
}
