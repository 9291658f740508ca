//! The root secret and the keys derived from it, one per purpose.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use service_kit::config::ConfigError;
use service_kit::pagination::CursorCodec;
use sha2::Sha256;

#[derive(Clone)]
pub struct Keys {
    credentials: [u8; 32],
    cursors: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

fn derive(root: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(root).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

impl Keys {
    pub fn from_root(root: &[u8]) -> Keys {
        Keys {
            credentials: derive(root, "spaceport/spaces/credential-hashes/v1"),
            cursors: derive(root, "spaceport/spaces/list-cursors/v1"),
        }
    }

    /// Loads the root secret: inline base64, or the key file (created with 32
    /// random bytes, mode 0600, when missing).
    pub fn load(inline: &str, file: &str) -> Result<Keys, ConfigError> {
        let decode = |key: &str, text: &str| {
            STANDARD
                .decode(text.trim())
                .ok()
                .filter(|bytes| bytes.len() >= 32)
                .ok_or_else(|| {
                    ConfigError::invalid(key, "must be at least 32 bytes, base64-encoded")
                })
        };
        if !inline.trim().is_empty() {
            return decode("secret.key", inline).map(|root| Keys::from_root(&root));
        }
        match std::fs::read_to_string(file) {
            Ok(text) => decode("secret.key_file", &text).map(|root| Keys::from_root(&root)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut root = [0u8; 32];
                getrandom::fill(&mut root)
                    .map_err(|e| ConfigError::invalid("secret.key_file", e.to_string()))?;
                service_kit::files::create_private(
                    std::path::Path::new(file),
                    &STANDARD.encode(root),
                )
                .map_err(|e| ConfigError::invalid("secret.key_file", format!("{file}: {e}")))?;
                tracing::info!(path = file, "generated a new root secret");
                Ok(Keys::from_root(&root))
            }
            Err(e) => Err(ConfigError::invalid(
                "secret.key_file",
                format!("{file}: {e}"),
            )),
        }
    }

    /// A keyed hash of a space API key: what is stored and looked up. A stolen
    /// table yields no usable key, and cannot be searched without the secret.
    pub fn credential_hash(&self, key: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.credentials)
            .expect("HMAC takes any key length");
        mac.update(key.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Signs and checks the cursors of the service's lists.
    pub fn cursor_codec(&self) -> CursorCodec {
        CursorCodec::new(self.cursors.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_keyed_and_purposes_separate() {
        let keys = Keys::from_root(&[7u8; 32]);
        let h = keys.credential_hash("sk_abc");
        assert_eq!(h.len(), 64);
        assert_eq!(h, keys.credential_hash("sk_abc"));
        assert_ne!(h, Keys::from_root(&[8u8; 32]).credential_hash("sk_abc"));
        assert_ne!(keys.credentials, keys.cursors);
    }

    #[test]
    fn root_secret_must_be_long_enough() {
        assert!(Keys::load("c2hvcnQ=", "/nonexistent").is_err());
        assert!(Keys::load(&STANDARD.encode([1u8; 32]), "/nonexistent").is_ok());
    }
}
