//! The root secret and the keys derived from it, one per purpose.

use service_kit::config::ConfigError;
use service_kit::pagination::CursorCodec;
use service_kit::secrets::RootSecret;

#[derive(Clone)]
pub struct Keys {
    credentials: [u8; 32],
    cursors: [u8; 32],
    /// Signs the URLs of signed uploads (`/api/v1/upload/signed`).
    pub(crate) upload_urls: [u8; 32],
    /// Signs the filesystem store's presigned PUT URLs.
    pub(crate) object_puts: [u8; 32],
    /// Signs delivery URLs (`expires`, `signature`).
    pub(crate) delivery_urls: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    pub fn from_root(root: &RootSecret) -> Keys {
        Keys {
            credentials: root.derive("spaceport/spaces/credential-hashes/v1"),
            cursors: root.derive("spaceport/spaces/list-cursors/v1"),
            upload_urls: root.derive("spaceport/spaces/upload-urls/v1"),
            object_puts: root.derive("spaceport/spaces/object-puts/v1"),
            delivery_urls: root.derive("spaceport/spaces/delivery-urls/v1"),
        }
    }

    /// Loads the root secret (`secret.key`, or the file `secret.key_file`).
    pub fn load(inline: &str, file: &str) -> Result<Keys, ConfigError> {
        RootSecret::load(inline, file).map(|root| Keys::from_root(&root))
    }

    /// A keyed hash of a space API key: what is stored and looked up. A stolen
    /// table yields no usable key, and cannot be searched without the secret.
    pub fn credential_hash(&self, key: &str) -> String {
        service_kit::secrets::keyed_hash(&self.credentials, key.as_bytes())
    }

    /// The key of signed upload URLs (`/api/v1/upload/signed`).
    pub fn upload_url_key(&self) -> &[u8; 32] {
        &self.upload_urls
    }

    /// The key of the filesystem store's presigned PUT URLs.
    pub fn object_put_key(&self) -> &[u8; 32] {
        &self.object_puts
    }

    /// The key of signed delivery URLs.
    pub fn delivery_url_key(&self) -> &[u8; 32] {
        &self.delivery_urls
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
        let keys = Keys::from_root(&RootSecret::from_bytes(&[7u8; 32]));
        let h = keys.credential_hash("sk_abc");
        assert_eq!(h.len(), 64);
        assert_eq!(h, keys.credential_hash("sk_abc"));
        assert_ne!(
            h,
            Keys::from_root(&RootSecret::from_bytes(&[8u8; 32])).credential_hash("sk_abc")
        );
        let all = [
            keys.credentials,
            keys.cursors,
            keys.upload_urls,
            keys.object_puts,
            keys.delivery_urls,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|b| a != b));
        }
    }

    #[test]
    fn root_secret_must_be_long_enough() {
        assert!(Keys::load("c2hvcnQ=", "/nonexistent").is_err());
        use base64::Engine;
        let root = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(Keys::load(&root, "/nonexistent").is_ok());
    }
}
