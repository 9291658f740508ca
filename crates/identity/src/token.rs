//! The identity token: what the gateway tells a service about a request's caller.

use crate::keys::{PublicKeys, SigningKey};
use crate::scopes::{Scope, ScopeSet};
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The request header that carries the token.
pub const HEADER: &str = "x-spaceport-identity";
/// `iss` of every identity token.
pub const ISSUER: &str = "spaceport-gateway";
/// `typ` of the JOSE header, so an identity token is never mistaken for another JWT.
pub const TOKEN_TYPE: &str = "spaceport-identity+jwt";
/// Longest lifetime a service accepts, whatever the token says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// Clock skew tolerated between the gateway and a service.
const LEEWAY_SECS: u64 = 5;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalType {
    /// A person, with a user access token.
    User,
    /// A service principal, with a client-credentials token.
    Service,
    /// A workspace API key.
    ApiKey,
    /// A space API key: one space only.
    SpaceKey,
    /// An operator with the system key: every workspace.
    System,
    /// The gateway itself, calling `/internal/*`.
    Gateway,
    /// No credential (public routes only).
    Anonymous,
}

/// What a service knows about the caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub principal_id: String,
    pub principal_type: PrincipalType,
    pub workspace_id: Option<String>,
    pub scopes: ScopeSet,
    /// For space keys: the one space the key belongs to.
    pub space_id: Option<String>,
    /// For workspace API keys bound to one SpaceOS organization: the only
    /// organization the key reaches.
    pub organization_id: Option<String>,
}

impl Identity {
    pub fn anonymous() -> Identity {
        Identity {
            principal_id: "anonymous".into(),
            principal_type: PrincipalType::Anonymous,
            workspace_id: None,
            scopes: ScopeSet::empty(),
            space_id: None,
            organization_id: None,
        }
    }

    /// The gateway's own identity for `/internal/*` calls.
    pub fn gateway() -> Identity {
        Identity {
            principal_id: "gateway".into(),
            principal_type: PrincipalType::Gateway,
            workspace_id: None,
            scopes: ScopeSet::empty(),
            space_id: None,
            organization_id: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.principal_type == PrincipalType::Anonymous
    }

    /// 401 for an anonymous caller, 403 for one without the scope.
    pub fn require_scope(&self, scope: &Scope) -> Result<(), ApiError> {
        if self.is_anonymous() {
            return Err(ApiError::unauthorized("authentication required"));
        }
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the `{scope}` scope is required"
            )))
        }
    }

    /// The workspace every tenant query filters by: 401 for an anonymous caller,
    /// 403 when the credential selects no workspace.
    pub fn require_workspace(&self) -> Result<&str, ApiError> {
        if self.is_anonymous() {
            return Err(ApiError::unauthorized("authentication required"));
        }
        self.workspace_id
            .as_deref()
            .ok_or_else(|| ApiError::forbidden("no workspace selected (send x-workspace-key)"))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    ptyp: PrincipalType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrk: Option<String>,
    #[serde(default)]
    scp: ScopeSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org: Option<String>,
    iat: u64,
    exp: u64,
    jti: String,
}

use crate::memory::{VerifiedTokens, now_secs};

/// Signs identity tokens (the gateway). Tokens are cached per identity and
/// audience and reused while more than half their lifetime remains, so a busy
/// caller does not cost a signature per request.
pub struct IdentitySigner {
    key: SigningKey,
    lifetime: Duration,
    cache: Mutex<HashMap<(Identity, String), (String, u64)>>,
}

const SIGNER_CACHE_CAPACITY: usize = 10_000;

impl IdentitySigner {
    pub fn new(key: SigningKey, lifetime: Duration) -> IdentitySigner {
        IdentitySigner {
            key,
            lifetime: lifetime.min(MAX_LIFETIME).max(Duration::from_secs(2)),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    pub fn public_keys(&self) -> PublicKeys {
        self.key.public_keys()
    }

    /// A token telling `audience` (a service name) who is calling.
    pub fn token_for(&self, identity: &Identity, audience: &str) -> String {
        self.token_reused_until(identity, audience).0
    }

    /// As [`IdentitySigner::token_for`], with the unix second until which
    /// this signer would hand out the same token (half its lifetime): a
    /// caller keeping the token itself reuses it no longer than that.
    pub fn token_reused_until(&self, identity: &Identity, audience: &str) -> (String, u64) {
        let now = now_secs();
        let lifetime = self.lifetime.as_secs();
        let reused_until = |exp: u64| exp - lifetime + lifetime / 2;
        let cache_key = (identity.clone(), audience.to_owned());
        if let Ok(cache) = self.cache.lock()
            && let Some((token, exp)) = cache.get(&cache_key)
            && exp.saturating_sub(now) > lifetime / 2
        {
            return (token.clone(), reused_until(*exp));
        }
        let exp = now + lifetime;
        let token = self.sign(identity, audience, now, exp);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= SIGNER_CACHE_CAPACITY {
                // Everything in it expires within a minute anyway.
                cache.clear();
            }
            cache.insert(cache_key, (token.clone(), exp));
        }
        (token, reused_until(exp))
    }

    fn sign(&self, identity: &Identity, audience: &str, iat: u64, exp: u64) -> String {
        let claims = Claims {
            iss: ISSUER.into(),
            aud: audience.into(),
            sub: identity.principal_id.clone(),
            ptyp: identity.principal_type,
            wrk: identity.workspace_id.clone(),
            scp: identity.scopes.clone(),
            spc: identity.space_id.clone(),
            org: identity.organization_id.clone(),
            iat,
            exp,
            jti: ulid::Ulid::new().to_string(),
        };
        self.key.sign_jwt(TOKEN_TYPE, &claims)
    }
}

/// Why a token was refused (logged; the client only sees 401).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no identity token")]
    Missing,
    #[error("malformed token header")]
    MalformedHeader,
    #[error("wrong token type")]
    WrongType,
    #[error("unknown key id")]
    UnknownKey,
    #[error("token lifetime too long")]
    TooLong,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies identity tokens meant for one service.
///
/// The gateway reuses a token for half its lifetime, so a service sees the
/// same token many times: tokens that verified are remembered (the exact
/// string, until it expires), and a repeat costs a map look-up instead of a
/// signature check (`crate::memory`).
#[derive(Clone)]
pub struct IdentityVerifier {
    keys: PublicKeys,
    validation: Validation,
    verified: VerifiedTokens<Identity>,
}

/// Verified tokens remembered per verifier; beyond it the memory starts afresh.
const VERIFIED_CAPACITY: usize = 10_000;

impl IdentityVerifier {
    pub fn new(audience: &str, keys: PublicKeys) -> IdentityVerifier {
        // The algorithm is pinned: the header cannot choose another one.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        IdentityVerifier {
            keys,
            validation,
            verified: VerifiedTokens::new(VERIFIED_CAPACITY),
        }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, VerifyError> {
        if token.len() > 8 * 1024 {
            return Err(VerifyError::Invalid("token too long".into()));
        }
        let digest = match self.verified.recall(token) {
            Ok(identity) => return Ok(identity),
            Err(digest) => digest,
        };
        let (identity, exp) = self.verify_signed(token)?;
        // Good as long as the signature check would pass: up to `exp` plus the
        // leeway, inclusive.
        self.verified.remember(
            digest,
            identity.clone(),
            exp.saturating_add(LEEWAY_SECS + 1),
        );
        Ok(identity)
    }

    /// The full check: header, key, signature, claims.
    fn verify_signed(&self, token: &str) -> Result<(Identity, u64), VerifyError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| VerifyError::MalformedHeader)?;
        if header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(VerifyError::WrongType);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(VerifyError::UnknownKey)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.exp.saturating_sub(claims.iat) > MAX_LIFETIME.as_secs() {
            return Err(VerifyError::TooLong);
        }
        let identity = Identity {
            principal_id: claims.sub,
            principal_type: claims.ptyp,
            workspace_id: claims.wrk,
            scopes: claims.scp,
            space_id: claims.spc,
            organization_id: claims.org,
        };
        Ok((identity, claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn member() -> Identity {
        Identity {
            principal_id: "usr_1".into(),
            principal_type: PrincipalType::User,
            workspace_id: Some("wrk_1".into()),
            scopes: ScopeSet::parse("bookings:read bookings:write").unwrap(),
            space_id: None,
            organization_id: None,
        }
    }

    fn signer() -> IdentitySigner {
        IdentitySigner::new(SigningKey::generate().unwrap(), Duration::from_secs(30))
    }

    #[test]
    fn round_trip_for_the_right_audience_only() {
        let signer = signer();
        let token = signer.token_for(&member(), "booking-service");
        let booking = IdentityVerifier::new("booking-service", signer.public_keys());
        assert_eq!(booking.verify(&token).unwrap(), member());
        let spaces = IdentityVerifier::new("spaces-service", signer.public_keys());
        assert!(
            spaces.verify(&token).is_err(),
            "a token for one service is refused by another"
        );
    }

    #[test]
    fn tokens_are_cached_per_identity_and_audience() {
        let signer = signer();
        let a = signer.token_for(&member(), "booking-service");
        assert_eq!(a, signer.token_for(&member(), "booking-service"));
        assert_ne!(a, signer.token_for(&member(), "spaces-service"));
        assert_ne!(
            a,
            signer.token_for(&Identity::anonymous(), "booking-service")
        );
    }

    #[test]
    fn refuses_other_keys_tampering_and_confusion() {
        let signer = signer();
        let verifier = IdentityVerifier::new("booking-service", signer.public_keys());
        // Signed by a key the service does not know.
        let stranger =
            IdentitySigner::new(SigningKey::generate().unwrap(), Duration::from_secs(30));
        assert!(matches!(
            verifier.verify(&stranger.token_for(&member(), "booking-service")),
            Err(VerifyError::UnknownKey)
        ));
        // Payload edited after signing.
        let token = signer.token_for(&member(), "booking-service");
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["wrk"] = "wrk_other".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        assert!(verifier.verify(&forged).is_err());
        // alg:none with the same kid.
        let header = serde_json::json!({"alg": "none", "typ": TOKEN_TYPE, "kid": signer.kid()});
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            parts[1]
        );
        assert!(verifier.verify(&unsigned).is_err());
        // HS256 "signed" with the public key bytes.
        let header = serde_json::json!({"alg": "HS256", "typ": TOKEN_TYPE, "kid": signer.kid()});
        let hs = jsonwebtoken::encode(
            &serde_json::from_value::<jsonwebtoken::Header>(header).unwrap(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(
                signer.public_keys().kids().next().unwrap().as_bytes(),
            ),
        )
        .unwrap();
        assert!(verifier.verify(&hs).is_err());
        for garbage in ["", "a.b.c", "not a token", &"x".repeat(10_000)] {
            assert!(verifier.verify(garbage).is_err());
        }
    }

    #[test]
    fn verified_tokens_are_remembered_until_they_expire() {
        let signer = signer();
        let verifier = IdentityVerifier::new("booking-service", signer.public_keys());
        let token = signer.token_for(&member(), "booking-service");
        assert_eq!(verifier.verify(&token).unwrap(), member());
        assert_eq!(verifier.verified.len(), 1);
        // A clone shares the memory; a repeat is answered from it.
        assert_eq!(verifier.clone().verify(&token).unwrap(), member());
        // Only the exact string: an edited copy is checked, and refused.
        let edited = format!("{token}x");
        assert!(verifier.verify(&edited).is_err());
        // An expired entry is not used.
        let now = now_secs();
        let digest = verifier.verified.recall("stale").unwrap_err();
        verifier
            .verified
            .remember(digest, member(), (now - 60) + LEEWAY_SECS + 1);
        assert!(verifier.verify("stale").is_err());
    }

    #[test]
    fn refuses_expired_and_overlong_tokens() {
        let signer = signer();
        let verifier = IdentityVerifier::new("booking-service", signer.public_keys());
        let now = now_secs();
        let expired = signer.sign(&member(), "booking-service", now - 120, now - 60);
        assert!(verifier.verify(&expired).is_err());
        let overlong = signer.sign(&member(), "booking-service", now, now + 3600);
        assert!(matches!(
            verifier.verify(&overlong),
            Err(VerifyError::TooLong)
        ));
    }

    #[test]
    fn scope_and_workspace_requirements() {
        let m = member();
        assert!(m.require_scope(&Scope::BOOKINGS_WRITE).is_ok());
        assert_eq!(
            m.require_scope(&Scope::SPACES_WRITE)
                .unwrap_err()
                .status
                .as_u16(),
            403
        );
        assert_eq!(m.require_workspace().unwrap(), "wrk_1");
        let anon = Identity::anonymous();
        assert_eq!(
            anon.require_scope(&Scope::BOOKINGS_READ)
                .unwrap_err()
                .status
                .as_u16(),
            401
        );
        assert_eq!(anon.require_workspace().unwrap_err().status.as_u16(), 401);
    }
}
