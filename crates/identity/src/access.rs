//! User and service-principal access tokens (RFC 9068 JWT profile): issued by
//! auth-service, verified by the gateway against auth-service's JWKS.

use crate::keys::PublicKeys;
use crate::memory::VerifiedTokens;
use crate::scopes::ScopeSet;
use crate::token::PrincipalType;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

/// `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// `usr_…` or `spn_…`
    pub sub: String,
    pub client_id: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// `user` or `service`
    pub ptyp: PrincipalType,
    /// The workspace the token acts in, when it embeds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrk: Option<String>,
    /// Space-separated scopes (RFC 9068 §2.2.3).
    pub scope: String,
    /// The sign-in session (refresh-token family) the token derives from;
    /// revoking the session revokes the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl AccessClaims {
    pub fn scopes(&self) -> ScopeSet {
        // Malformed scopes are dropped rather than failing the token.
        ScopeSet::from_names(
            self.scope
                .split_ascii_whitespace()
                .filter(|s| crate::Scope::parse(s).is_some()),
        )
        .unwrap_or_default()
    }
}

/// Why an access token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessTokenError {
    #[error("malformed token")]
    Malformed,
    #[error("not an access token")]
    WrongType,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies access tokens: EdDSA only, the configured issuer and audience,
/// `typ: at+jwt`, a known `kid`, and `exp`/`nbf` with a little clock skew.
#[derive(Clone)]
pub struct AccessTokenVerifier {
    keys: PublicKeys,
    validation: Validation,
    /// Tokens that verified, until they expire (a client sends one token for
    /// its whole life). A new key set means a new verifier, so a key withdrawn
    /// from the JWKS takes its tokens with it.
    verified: VerifiedTokens<AccessClaims>,
}

/// Verified access tokens remembered at once (a few hundred bytes each).
const VERIFIED_CAPACITY: usize = 20_000;

impl AccessTokenVerifier {
    pub fn new(issuer: &str, audience: &str, keys: PublicKeys) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        AccessTokenVerifier {
            keys,
            validation,
            verified: VerifiedTokens::new(VERIFIED_CAPACITY),
        }
    }

    /// The key id a token names, to decide whether the key set needs a refetch.
    pub fn kid_of(token: &str) -> Result<Option<String>, AccessTokenError> {
        jsonwebtoken::decode_header(token)
            .map(|h| h.kid)
            .map_err(|_| AccessTokenError::Malformed)
    }

    pub fn verify(&self, token: &str) -> Result<AccessClaims, AccessTokenError> {
        if token.len() > 8 * 1024 {
            return Err(AccessTokenError::Malformed);
        }
        let digest = match self.verified.recall(token) {
            Ok(claims) => return Ok(claims),
            Err(digest) => digest,
        };
        let claims = self.verify_signed(token)?;
        // Remembered until `exp`, not through the leeway: a repeat after
        // expiry is checked again.
        self.verified.remember(digest, claims.clone(), claims.exp);
        Ok(claims)
    }

    /// The full check: header, key, signature, claims.
    fn verify_signed(&self, token: &str) -> Result<AccessClaims, AccessTokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AccessTokenError::Malformed)?;
        if header
            .typ
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
            != Some(ACCESS_TOKEN_TYPE)
        {
            return Err(AccessTokenError::WrongType);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(AccessTokenError::UnknownKey)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AccessTokenError::Invalid(e.to_string()))
    }
}
