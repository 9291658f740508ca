//! The signatures every delivery carries, and how a receiver checks them
//! ([`verify_product`], [`verify_standard`]; the tests verify with these, a
//! Rust receiver may too).
//!
//! Which key bytes each signature uses, for a subscription whose secret is the
//! string `S` (as shown at creation, or as the client supplied it):
//!
//! - the product signature (`X-Webhook-Signature` on SpaceOS subscriptions,
//!   `x-gospace-signature` on gospace ones): lowercase hex of
//!   HMAC-SHA256 with key = the UTF-8 bytes of `S` exactly as written
//!   (`whsec_…` prefix included), over the raw body. This is what SpaceOS and
//!   gospace receivers compute with the secret they hold.
//! - the Standard Webhooks signature (`webhook-signature: v1,<base64>`):
//!   HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with key =
//!   the base64-decoded part after `whsec_` when `S` starts with `whsec_`
//!   (generated secrets always do), otherwise the UTF-8 bytes of `S`. Stock
//!   libraries take `S` itself for a `whsec_` secret; for another secret, pass
//!   them `whsec_` + base64(UTF-8 bytes of `S`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The product signature header of SpaceOS subscriptions.
pub const SPACEOS_HEADER: &str = "x-webhook-signature";
/// The product signature header of gospace subscriptions.
pub const GOSPACE_HEADER: &str = "x-gospace-signature";
/// Standard Webhooks: the message id, the same on every attempt of one
/// delivery (the delivery's id, `dlv_…`).
pub const ID_HEADER: &str = "webhook-id";
/// Standard Webhooks: Unix seconds of the attempt.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks: `v1,<base64 signature>`.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// How far a Standard Webhooks timestamp may be from the receiver's clock
/// (the standard's recommendation).
pub const TOLERANCE_SECS: i64 = 5 * 60;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The product signature: hex(HMAC-SHA256(UTF-8 bytes of `secret`, body)).
pub fn product_signature(secret: &str, body: &[u8]) -> String {
    hex(&hmac(secret.as_bytes(), &[body]))
}

/// The Standard Webhooks key of `secret`: the decoded part of a `whsec_`
/// secret, else the secret's UTF-8 bytes.
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(crate::secrets::SECRET_PREFIX)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let signed = hmac(
        &standard_key(secret),
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    );
    format!("v1,{}", STANDARD.encode(signed))
}

/// Whether `header` is the product signature of `body` (constant time).
pub fn verify_product(secret: &str, body: &[u8], header: &str) -> bool {
    let expected = product_signature(secret, body);
    let given = header.trim().to_ascii_lowercase();
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Why a Standard Webhooks signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// `webhook-timestamp` is not a number of seconds.
    BadTimestamp,
    /// `webhook-timestamp` is further than [`TOLERANCE_SECS`] from `now`: a
    /// replay, or a clock far off.
    Stale,
    /// No `v1` signature in the header matches.
    Mismatch,
}

/// Checks a delivery the way Standard Webhooks libraries do: the timestamp
/// within [`TOLERANCE_SECS`] of `now` (Unix seconds), and one of the
/// space-separated `v1,…` signatures of the header matching.
pub fn verify_standard(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: i64,
) -> Result<(), VerifyError> {
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now - seconds).abs() > TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    let expected = standard_signature(secret, id, seconds, body);
    let matches = header.split_ascii_whitespace().any(|candidate| {
        candidate.len() == expected.len()
            && bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()))
    });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(secret, id, 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(
            verify_standard(
                secret,
                id,
                "1614265330",
                body,
                "v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                1614265330 + 10
            ),
            Ok(())
        );
        assert_eq!(
            verify_standard(secret, id, "1614265330", body, "v1,x", 1614265330),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_standard(secret, id, "1614265330", b"{}", "", 1614265330 + 3600),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify_standard(secret, id, "soon", b"{}", "", 0),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn product_signatures_use_the_secret_as_written() {
        // RFC 4231-style check against a known HMAC-SHA256.
        assert_eq!(
            product_signature("key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let body = br#"{"event":"ping"}"#;
        let signature = product_signature("whsec_AAAA", body);
        assert!(verify_product("whsec_AAAA", body, &signature));
        assert!(verify_product(
            "whsec_AAAA",
            body,
            &signature.to_uppercase()
        ));
        assert!(!verify_product("whsec_AAAB", body, &signature));
        assert!(!verify_product("whsec_AAAA", b"{}", &signature));
    }

    #[test]
    fn standard_keys() {
        assert_eq!(standard_key("whsec_AAECAw=="), vec![0, 1, 2, 3]);
        assert_eq!(standard_key("your-webhook-secret"), b"your-webhook-secret");
        // A client's secret that merely starts like one, undecodable: its bytes.
        assert_eq!(standard_key("whsec_!!"), b"whsec_!!");
    }
}
