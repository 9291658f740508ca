//! The root secret, the key derived from it that seals subscription secrets at
//! rest, and the secrets themselves.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use service_kit::config::ConfigError;
use service_kit::secrets::RootSecret;

/// Random bytes of a generated secret.
const GENERATED_SECRET_BYTES: usize = 32;
/// The Standard Webhooks secret prefix.
pub const SECRET_PREFIX: &str = "whsec_";

#[derive(Clone)]
pub struct Keys {
    sealing: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    pub fn from_root(root: &RootSecret) -> Keys {
        Keys {
            sealing: root.derive("spaceport/events/webhook-secret-sealing/v1"),
        }
    }

    /// Loads the root secret (`secret.key`, or the file `secret.key_file`).
    pub fn load(inline: &str, file: &str) -> Result<Keys, ConfigError> {
        RootSecret::load(inline, file).map(|root| Keys::from_root(&root))
    }

    /// Seals a subscription's secret (AES-256-GCM, a fresh nonce each time);
    /// `context` (the subscription's id) is bound to it, so a sealed secret
    /// cannot be moved to another row.
    pub fn seal(&self, secret: &str, context: &str) -> String {
        let cipher = Aes256Gcm::new_from_slice(&self.sealing).expect("32-byte key");
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("random nonce");
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    /// The secret sealed for `context`, or `None` when it was sealed under
    /// another root secret or for another row.
    pub fn open(&self, sealed: &str, context: &str) -> Option<String> {
        let bytes = STANDARD.decode(sealed).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let cipher = Aes256Gcm::new_from_slice(&self.sealing).expect("32-byte key");
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

/// A new secret in the Standard Webhooks form: `whsec_` and the base64 of 32
/// random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; GENERATED_SECRET_BYTES];
    getrandom::fill(&mut bytes).expect("random bytes");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// What views show of a secret: its first characters.
pub fn hint(secret: &str) -> String {
    let visible: String = secret.chars().take(10).collect();
    format!("{visible}…")
}

/// Shortest and longest secret a client may choose.
pub const MIN_SECRET: usize = 16;
pub const MAX_SECRET: usize = 256;

/// A secret a client supplied: 16 to 256 printable ASCII characters without
/// spaces; a `whsec_` secret must carry base64 of 24 to 64 bytes after the
/// prefix (what Standard Webhooks libraries accept).
pub fn check_secret(secret: &str) -> Result<(), &'static str> {
    if !(MIN_SECRET..=MAX_SECRET).contains(&secret.len())
        || !secret.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("must be 16 to 256 printable ASCII characters without spaces");
    }
    if let Some(encoded) = secret.strip_prefix(SECRET_PREFIX) {
        let valid = STANDARD
            .decode(encoded)
            .is_ok_and(|key| (24..=64).contains(&key.len()));
        if !valid {
            return Err("a whsec_ secret must be whsec_ followed by the base64 of 24 to 64 bytes");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_binds_the_row() {
        let keys = Keys::from_root(&RootSecret::from_bytes(&[7u8; 32]));
        let sealed = keys.seal("whsec_abc", "wh_1");
        assert_eq!(keys.open(&sealed, "wh_1").as_deref(), Some("whsec_abc"));
        assert!(keys.open(&sealed, "wh_2").is_none(), "moved to another row");
        assert!(
            Keys::from_root(&RootSecret::from_bytes(&[8u8; 32]))
                .open(&sealed, "wh_1")
                .is_none(),
            "another root"
        );
        assert_ne!(sealed, keys.seal("whsec_abc", "wh_1"), "a fresh nonce");
        assert!(!sealed.contains("whsec"));
    }

    #[test]
    fn generated_secrets_are_standard_webhooks_secrets() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&secret[6..]).unwrap().len(), 32);
        assert!(check_secret(&secret).is_ok());
        assert_ne!(secret, generate_secret());
        assert_eq!(hint(&secret).chars().count(), 11);
    }

    #[test]
    fn client_secrets() {
        assert!(check_secret("your-webhook-secret").is_ok());
        for bad in [
            "short",
            "has a space in it!!",
            "tab\tseparated-secret",
            "whsec_not-base64-at-all!",
            "whsec_c2hvcnQ=",
            &"x".repeat(257),
        ] {
            assert!(check_secret(bad).is_err(), "{bad}");
        }
    }
}
