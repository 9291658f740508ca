//! URLs that carry their own authorisation, as Tuzzle signs them: an
//! `expires` parameter (Unix seconds) and a `signature`, the lowercase hex
//! HMAC-SHA256 of `{path}?{every other parameter, sorted by name then value,
//! form-encoded}` under a key of one purpose (signed uploads, presigned
//! PUTs and delivery each have their own, derived from `secret.key`).
//! Changing, adding or removing any parameter breaks the signature.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the URL carries no signature or no expiry")]
    Unsigned,
    #[error("the URL has expired")]
    Expired,
    #[error("the signature does not match the URL")]
    Invalid,
}

fn mac(key: &[u8; 32], path: &str, params: &[(String, String)]) -> Hmac<Sha256> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in sorted {
        query.append_pair(name, value);
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(path.as_bytes());
    mac.update(b"?");
    mac.update(query.finish().as_bytes());
    mac
}

/// The query string that signs `path` with `params` until `expires` (Unix
/// seconds): the parameters, `expires` and `signature`, form-encoded.
pub fn sign(key: &[u8; 32], path: &str, params: &[(String, String)], expires: i64) -> String {
    let mut all: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name != "expires" && name != "signature")
        .cloned()
        .collect();
    all.push(("expires".into(), expires.to_string()));
    let signature = crate::storage::hex(&mac(key, path, &all).finalize().into_bytes());
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in &all {
        query.append_pair(name, value);
    }
    query.append_pair("signature", &signature);
    query.finish()
}

/// Checks the signed `query` of `path` at `now` (Unix seconds); returns the
/// parameters it signs (without `signature`; `expires` included).
pub fn verify(
    key: &[u8; 32],
    path: &str,
    query: &str,
    now: i64,
) -> Result<Vec<(String, String)>, Refusal> {
    let mut signature = None;
    let mut params = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "signature" {
            if signature.replace(value.into_owned()).is_some() {
                return Err(Refusal::Invalid);
            }
        } else {
            params.push((name.into_owned(), value.into_owned()));
        }
    }
    let expiries: Vec<&str> = params
        .iter()
        .filter(|(name, _)| name == "expires")
        .map(|(_, value)| value.as_str())
        .collect();
    let (Some(signature), [expires]) = (signature, expiries.as_slice()) else {
        return Err(Refusal::Unsigned);
    };
    let expires: i64 = expires.parse().map_err(|_| Refusal::Invalid)?;
    let given = decode_hex(&signature).ok_or(Refusal::Invalid)?;
    mac(key, path, &params)
        .verify_slice(&given)
        .map_err(|_| Refusal::Invalid)?;
    if expires <= now {
        return Err(Refusal::Expired);
    }
    Ok(params)
}

/// The value of `name` among signed parameters.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9; 32];

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn signed_urls_verify_until_they_expire() {
        let query = sign(
            &KEY,
            "/a1b2c3/image-1",
            &pairs(&[("w", "400"), ("f", "webp")]),
            2000,
        );
        assert!(query.contains("expires=2000") && query.contains("signature="));
        let params = verify(&KEY, "/a1b2c3/image-1", &query, 1999).unwrap();
        assert_eq!(param(&params, "w"), Some("400"));
        assert_eq!(
            verify(&KEY, "/a1b2c3/image-1", &query, 2000),
            Err(Refusal::Expired)
        );
        // The order of parameters does not matter; their values do.
        let reordered = query.replace("w=400&f=webp", "f=webp&w=400");
        assert!(verify(&KEY, "/a1b2c3/image-1", &reordered, 1).is_ok());
        for tampered in [
            query.replace("w=400", "w=401"),
            query.replace("expires=2000", "expires=3000"),
            format!("{query}&h=10"),
            query.replace("w=400&", ""),
        ] {
            assert_eq!(
                verify(&KEY, "/a1b2c3/image-1", &tampered, 1),
                Err(Refusal::Invalid),
                "{tampered}"
            );
        }
        assert_eq!(
            verify(&KEY, "/a1b2c3/image-2", &query, 1),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            verify(&[8; 32], "/a1b2c3/image-1", &query, 1),
            Err(Refusal::Invalid)
        );
        assert_eq!(verify(&KEY, "/x", "w=1", 1), Err(Refusal::Unsigned));
        assert_eq!(verify(&KEY, "/x", "expires=5", 1), Err(Refusal::Unsigned));
        assert_eq!(
            verify(&KEY, "/x", "expires=5&signature=zz", 1),
            Err(Refusal::Invalid)
        );
    }
}
