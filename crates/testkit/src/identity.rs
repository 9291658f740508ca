//! The tests' stand-in for the gateway: one signing key per test process.

use identity::{Identity, IdentitySigner, SigningKey};
use std::sync::OnceLock;
use std::time::Duration;

static SIGNER: OnceLock<IdentitySigner> = OnceLock::new();
static PRIVATE_PEM: OnceLock<String> = OnceLock::new();

fn key_pem() -> &'static str {
    PRIVATE_PEM.get_or_init(|| SigningKey::generate().expect("test key").private_pem())
}

pub fn signer() -> &'static IdentitySigner {
    SIGNER.get_or_init(|| {
        IdentitySigner::new(
            SigningKey::from_pem(key_pem()).expect("test key"),
            Duration::from_secs(60),
        )
    })
}

/// The private key, for a gateway under test that must sign like the tests do.
pub fn private_pem() -> String {
    key_pem().to_owned()
}

/// The public key, for services under test.
pub fn public_pem() -> String {
    SigningKey::from_pem(key_pem())
        .expect("test key")
        .public_pem()
}

/// An `x-spaceport-identity` value for `identity`, addressed to `audience`.
pub fn token(identity: &Identity, audience: &str) -> String {
    signer().token_for(identity, audience)
}
