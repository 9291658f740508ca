//! A service's root secret (`secret.key`, or the file `secret.key_file`) and
//! the keys derived from it, one per purpose, so that no key serves two.

use crate::config::ConfigError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// At least 32 random bytes; never printed.
pub struct RootSecret(Vec<u8>);

impl std::fmt::Debug for RootSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootSecret([redacted])")
    }
}

impl RootSecret {
    pub fn from_bytes(bytes: &[u8]) -> RootSecret {
        RootSecret(bytes.to_vec())
    }

    /// Inline base64 (`secret.key`), else the key file (`secret.key_file`),
    /// which is created with 32 random bytes, mode 0600, when missing: one
    /// machine needs no setup, a cluster sets the same key on every replica.
    pub fn load(inline: &str, file: &str) -> Result<RootSecret, ConfigError> {
        let decode = |key: &str, text: &str| {
            STANDARD
                .decode(text.trim())
                .ok()
                .filter(|bytes| bytes.len() >= 32)
                .map(RootSecret)
                .ok_or_else(|| {
                    ConfigError::invalid(key, "must be at least 32 bytes, base64-encoded")
                })
        };
        if !inline.trim().is_empty() {
            return decode("secret.key", inline);
        }
        match std::fs::read_to_string(file) {
            Ok(text) => decode("secret.key_file", &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut root = [0u8; 32];
                getrandom::fill(&mut root)
                    .map_err(|e| ConfigError::invalid("secret.key_file", e.to_string()))?;
                crate::files::create_private(std::path::Path::new(file), &STANDARD.encode(root))
                    .map_err(|e| ConfigError::invalid("secret.key_file", format!("{file}: {e}")))?;
                tracing::info!(path = file, "generated a new root secret");
                Ok(RootSecret(root.to_vec()))
            }
            Err(e) => Err(ConfigError::invalid(
                "secret.key_file",
                format!("{file}: {e}"),
            )),
        }
    }

    /// The key for `purpose` (e.g. `spaceport/auth/one-time-codes/v1`).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// HMAC-SHA256 of `data` under `key`, in lowercase hex: the stored form of a
/// credential, useless without the key.
pub fn keyed_hash(key: &[u8; 32], data: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_get_their_own_keys_and_bad_secrets_are_refused() {
        let root = RootSecret::from_bytes(&[7u8; 32]);
        assert_ne!(root.derive("a"), root.derive("b"));
        assert_eq!(
            root.derive("a"),
            RootSecret::from_bytes(&[7u8; 32]).derive("a")
        );
        assert_eq!(format!("{root:?}"), "RootSecret([redacted])");
        let error = RootSecret::load("c2hvcnQ=", "/nonexistent").unwrap_err();
        assert!(error.to_string().contains("secret.key"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("root.key");
        let file = file.to_str().unwrap();
        let created = RootSecret::load("", file).unwrap();
        let again = RootSecret::load("", file).unwrap();
        assert_eq!(created.derive("x"), again.derive("x"));
        assert_eq!(keyed_hash(&[1u8; 32], b"k").len(), 64);
    }
}
