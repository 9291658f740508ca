//! The root secret and the keys derived from it.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use service_kit::config::ConfigError;
use service_kit::secrets::RootSecret;
use sha2::Sha256;

/// Keys derived from the root secret, one per purpose, so a key is never used
/// for two things.
#[derive(Clone)]
pub struct Keys {
    sealing: [u8; 32],
    otp: [u8; 32],
    credentials: [u8; 32],
    verified_clients: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    pub fn from_root(root: &RootSecret) -> Keys {
        Keys {
            sealing: root.derive("spaceport/auth/signing-key-sealing/v1"),
            otp: root.derive("spaceport/auth/one-time-codes/v1"),
            credentials: root.derive("spaceport/auth/credential-hashes/v1"),
            verified_clients: root.derive("spaceport/auth/verified-client-memory/v1"),
        }
    }

    /// Loads the root secret (`secret.key`, or the file `secret.key_file`).
    pub fn load(inline: &str, file: &str) -> Result<Keys, ConfigError> {
        RootSecret::load(inline, file).map(|root| Keys::from_root(&root))
    }

    /// Seals `plaintext` for storage; `context` (e.g. the key id) is bound to the
    /// ciphertext, so a sealed value cannot be moved to another row.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let cipher = Aes256Gcm::new_from_slice(&self.sealing).expect("32-byte key");
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("random nonce");
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str, context: &str) -> Option<Vec<u8>> {
        let bytes = STANDARD.decode(sealed).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let cipher = Aes256Gcm::new_from_slice(&self.sealing).expect("32-byte key");
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .ok()
    }

    /// A keyed hash of a one-time code for `email`: a stolen table reveals no
    /// code, and the six-digit space cannot be searched without the key.
    pub fn otp_hash(&self, email: &str, code: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.otp).expect("HMAC takes any key length");
        mac.update(email.as_bytes());
        mac.update(&[0]);
        mac.update(code.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

impl Keys {
    /// A keyed hash of a long random credential (client secret, API key
    /// secret): what is stored, compared in constant time at use.
    pub fn credential_hash(&self, secret: &str) -> String {
        service_kit::secrets::keyed_hash(&self.credentials, secret.as_bytes())
    }

    /// What a replica remembers a verified client id and secret by
    /// ([`crate::verified_clients`]): HMAC-SHA256 of both, length-prefixed so
    /// that no two pairs share an input. Never the secret, nor its stored hash:
    /// a memory dump yields neither, and the key is not the one of the stored
    /// hashes.
    pub fn verified_client_tag(&self, client_id: &str, secret: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.verified_clients)
            .expect("HMAC takes any key length");
        mac.update(&(client_id.len() as u64).to_be_bytes());
        mac.update(client_id.as_bytes());
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Constant-time equality of two stored-form hashes.
pub fn hashes_match(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `prefix` + 32 random bytes, base64url: 256 bits a credential.
pub fn random_credential(prefix: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("random bytes");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_binds_context() {
        let keys = Keys::from_root(&RootSecret::from_bytes(&[7u8; 32]));
        let sealed = keys.seal(b"private key", "kid-1");
        assert_eq!(keys.open(&sealed, "kid-1").unwrap(), b"private key");
        assert!(
            keys.open(&sealed, "kid-2").is_none(),
            "moved to another row"
        );
        assert!(
            Keys::from_root(&RootSecret::from_bytes(&[8u8; 32]))
                .open(&sealed, "kid-1")
                .is_none(),
            "another root"
        );
        assert_ne!(
            sealed,
            keys.seal(b"private key", "kid-1"),
            "fresh nonce each time"
        );
    }

    #[test]
    fn otp_hash_is_keyed_and_bound_to_the_email() {
        let keys = Keys::from_root(&RootSecret::from_bytes(&[7u8; 32]));
        let h = keys.otp_hash("a@example.com", "123456");
        assert_eq!(h.len(), 64);
        assert_ne!(h, keys.otp_hash("b@example.com", "123456"));
        assert_ne!(
            h,
            Keys::from_root(&RootSecret::from_bytes(&[8u8; 32]))
                .otp_hash("a@example.com", "123456")
        );
    }

    #[test]
    fn verified_client_tags_are_keyed_and_bind_id_and_secret() {
        let keys = Keys::from_root(&RootSecret::from_bytes(&[7u8; 32]));
        let tag = keys.verified_client_tag("spn_1", "sps_a");
        assert_eq!(tag, keys.verified_client_tag("spn_1", "sps_a"));
        assert_ne!(tag, keys.verified_client_tag("spn_1", "sps_b"));
        assert_ne!(tag, keys.verified_client_tag("spn_2", "sps_a"));
        // The boundary between id and secret is part of the input.
        assert_ne!(
            keys.verified_client_tag("spn_1s", "ps_a"),
            keys.verified_client_tag("spn_1", "sps_a")
        );
        assert_ne!(
            tag,
            Keys::from_root(&RootSecret::from_bytes(&[8u8; 32]))
                .verified_client_tag("spn_1", "sps_a")
        );
        // Not the stored hash of the secret under another name.
        assert_ne!(hex(&tag), keys.credential_hash("sps_a"));
    }

    #[test]
    fn root_secret_must_be_long_enough() {
        assert!(Keys::load("c2hvcnQ=", "/nonexistent").is_err());
        assert!(Keys::load(&STANDARD.encode([1u8; 32]), "/nonexistent").is_ok());
    }
}
