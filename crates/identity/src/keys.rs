//! Ed25519 keys for the identity token: generation, PEM in and out, key ids.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::DecodingKey;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a valid Ed25519 private key (PKCS#8 PEM expected)")]
    InvalidPrivateKey,
    #[error("not a valid Ed25519 public key (SPKI PEM expected)")]
    InvalidPublicKey,
    #[error("no public key given")]
    NoPublicKey,
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read random bytes: {0}")]
    Random(String),
}

/// The RFC 7638 thumbprint of an Ed25519 key: a stable, public key id.
pub fn thumbprint(public_key: &[u8; 32]) -> String {
    let x = URL_SAFE_NO_PAD.encode(public_key);
    // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// A private signing key with its id.
pub struct SigningKey {
    kid: String,
    /// Parsing, PEM and the public key.
    inner: ed25519_dalek::SigningKey,
    /// The same key, expanded once, for signing: AWS-LC's Ed25519 signs in
    /// under half of dalek's time (`make bench`'s signing-only figure).
    signer: aws_lc_rs::signature::Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn generate() -> Result<SigningKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(
            &seed,
        )))
    }

    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map(Self::from_dalek)
            .map_err(|_| KeyError::InvalidPrivateKey)
    }

    fn from_dalek(inner: ed25519_dalek::SigningKey) -> SigningKey {
        let public = inner.verifying_key();
        let signer = aws_lc_rs::signature::Ed25519KeyPair::from_seed_and_public_key(
            inner.as_bytes(),
            public.as_bytes(),
        )
        .expect("a valid Ed25519 key pair is accepted by AWS-LC");
        SigningKey {
            kid: thumbprint(public.as_bytes()),
            inner,
            signer,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn private_pem(&self) -> String {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key encodes as PEM")
            .to_string()
    }

    pub fn public_pem(&self) -> String {
        self.inner
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 public key encodes as PEM")
    }

    /// Signs `claims` as a compact JWS (RFC 7515 §7.1; EdDSA, RFC 8037) with
    /// this key's id and `typ`. With the key already expanded: jsonwebtoken's
    /// `encode` parses its PKCS#8 form on every call, which derives the public
    /// key again and doubled the cost of a signature.
    pub fn sign_jwt<T: serde::Serialize>(&self, typ: &str, claims: &T) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        let mut jws = String::with_capacity(512);
        for part in [
            serde_json::to_vec(&header).expect("a JWS header serializes"),
            serde_json::to_vec(claims).expect("claims serialize"),
        ] {
            if !jws.is_empty() {
                jws.push('.');
            }
            URL_SAFE_NO_PAD.encode_string(part, &mut jws);
        }
        let signature = self.signer.sign(jws.as_bytes());
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut jws);
        jws
    }

    /// The public key as a JWK (RFC 8037), for a JWKS document.
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.inner.verifying_key().as_bytes()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        })
    }

    pub fn public_keys(&self) -> PublicKeys {
        PublicKeys::from_pem_bundle(&self.public_pem()).expect("own public key parses")
    }

    /// Reads the key at `path`, creating it (mode 0600) with a new key when the
    /// file does not exist. For one machine (`make run`); clusters provide keys.
    pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
        let file_error = |source| KeyError::File {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                service_kit::files::create_private(path, &key.private_pem()).map_err(file_error)?;
                tracing::info!(path = %path.display(), kid = key.kid(), "generated a new identity signing key");
                Ok(key)
            }
            Err(e) => Err(file_error(e)),
        }
    }
}

/// Public keys that may have signed a token, by key id. Several keys let the
/// gateway rotate: publish the new public key to the services first, then sign
/// with it, then retire the old one.
#[derive(Clone)]
pub struct PublicKeys {
    by_kid: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_kid.keys()).finish()
    }
}

impl PublicKeys {
    /// One or more `-----BEGIN PUBLIC KEY-----` blocks.
    pub fn from_pem_bundle(bundle: &str) -> Result<PublicKeys, KeyError> {
        const END: &str = "-----END PUBLIC KEY-----";
        let mut by_kid = HashMap::new();
        for block in bundle
            .split_inclusive(END)
            .filter(|b| b.contains("BEGIN PUBLIC KEY"))
        {
            let key = ed25519_dalek::VerifyingKey::from_public_key_pem(block.trim())
                .map_err(|_| KeyError::InvalidPublicKey)?;
            let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
            let decoding =
                DecodingKey::from_ed_components(&x).map_err(|_| KeyError::InvalidPublicKey)?;
            by_kid.insert(thumbprint(key.as_bytes()), decoding);
        }
        if by_kid.is_empty() {
            return Err(if bundle.trim().is_empty() {
                KeyError::NoPublicKey
            } else {
                KeyError::InvalidPublicKey
            });
        }
        Ok(PublicKeys { by_kid })
    }

    /// The Ed25519 keys of a JWKS document (RFC 7517); other key types are
    /// skipped. The key id is recomputed from the key, never taken on trust.
    pub fn from_jwks(jwks: &serde_json::Value) -> Result<PublicKeys, KeyError> {
        let mut by_kid = HashMap::new();
        for jwk in jwks["keys"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
                continue;
            }
            let x = jwk["x"].as_str().ok_or(KeyError::InvalidPublicKey)?;
            let bytes: [u8; 32] = URL_SAFE_NO_PAD
                .decode(x)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(KeyError::InvalidPublicKey)?;
            let decoding =
                DecodingKey::from_ed_components(x).map_err(|_| KeyError::InvalidPublicKey)?;
            by_kid.insert(thumbprint(&bytes), decoding);
        }
        if by_kid.is_empty() {
            return Err(KeyError::NoPublicKey);
        }
        Ok(PublicKeys { by_kid })
    }

    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.by_kid.get(kid)
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.by_kid.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ed25519 signatures are deterministic, so the token is byte for byte
    /// what jsonwebtoken's own `encode` makes of the same header and claims.
    #[test]
    fn tokens_are_what_jsonwebtoken_signs() {
        let key = SigningKey::generate().unwrap();
        let claims = serde_json::json!({"sub": "usr_1", "exp": 2_000_000_000u64, "scp": "a b"});
        let ours = key.sign_jwt("at+jwt", &claims);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid().to_owned());
        let der = key.inner.to_pkcs8_der().unwrap();
        let theirs = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        )
        .unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.split('.').count(), 3);
    }

    /// AWS-LC signs; dalek, which parsed the key, makes the same signature
    /// over the same signing input, and it verifies.
    #[test]
    fn the_signature_is_dalek_s_own() {
        use ed25519_dalek::{Signer, Verifier};
        let key = SigningKey::generate().unwrap();
        let token = key.sign_jwt("at+jwt", &serde_json::json!({"sub": "usr_1"}));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert_eq!(signature, key.inner.sign(input.as_bytes()).to_bytes());
        let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        assert!(
            key.inner
                .verifying_key()
                .verify(input.as_bytes(), &signature)
                .is_ok()
        );
    }

    #[test]
    fn pem_round_trip_keeps_the_key_id() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(&key.private_pem()).unwrap();
        assert_eq!(key.kid(), again.kid());
        let public = PublicKeys::from_pem_bundle(&key.public_pem()).unwrap();
        assert_eq!(public.kids().collect::<Vec<_>>(), vec![key.kid()]);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn jwks_round_trip() {
        let key = SigningKey::generate().unwrap();
        let jwks =
            serde_json::json!({"keys": [key.public_jwk(), {"kty": "RSA", "n": "x", "e": "AQAB"}]});
        let keys = PublicKeys::from_jwks(&jwks).unwrap();
        assert_eq!(keys.kids().collect::<Vec<_>>(), vec![key.kid()]);
        assert!(PublicKeys::from_jwks(&serde_json::json!({"keys": []})).is_err());
    }

    #[test]
    fn bundles_hold_several_keys() {
        let (a, b) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let bundle = format!("{}\n{}", a.public_pem(), b.public_pem());
        let keys = PublicKeys::from_pem_bundle(&bundle).unwrap();
        assert!(keys.get(a.kid()).is_some() && keys.get(b.kid()).is_some());
        assert!(matches!(
            PublicKeys::from_pem_bundle(""),
            Err(KeyError::NoPublicKey)
        ));
        assert!(
            PublicKeys::from_pem_bundle(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
            )
            .is_err()
        );
        assert!(SigningKey::from_pem("garbage").is_err());
    }

    #[test]
    fn thumbprint_matches_rfc_8037_example() {
        // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key: [u8; 32] = x.try_into().unwrap();
        assert_eq!(
            thumbprint(&key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn load_or_create_persists_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/identity.pem");
        let first = SigningKey::load_or_create(&path).unwrap();
        let second = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(first.kid(), second.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
