//! Who is calling: the gateway verifies the client's credential and turns it
//! into the identity it signs for the services.
//!
//! Bearer JWTs (user and service-principal access tokens) are verified here,
//! against auth-service's JWKS, without a call per request. Other `Authorization`
//! schemes (e.g. `Basic` on the OAuth token endpoint) are for the service behind
//! the route and pass through untouched.

use crate::config::TokenConfig;
use actix_web::HttpRequest;
use identity::revocation::{self, Revocation};
use identity::{AccessClaims, AccessTokenVerifier, Identity, PrincipalType, PublicKeys};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Why a request's credential was refused (a metric label; clients see 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Malformed,
    UnknownKey,
    Invalid,
    Revoked,
    Unsupported,
    KeysUnavailable,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Malformed => "malformed",
            Failure::UnknownKey => "unknown_key",
            Failure::Invalid => "invalid",
            Failure::Revoked => "revoked",
            Failure::Unsupported => "unsupported",
            Failure::KeysUnavailable => "keys_unavailable",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Failure::Unsupported => "this kind of credential is not accepted",
            Failure::KeysUnavailable => "credentials cannot be verified right now",
            _ => "invalid credential",
        }
    }
}

/// The credential a request presents, read from its headers.
pub enum Credential {
    None,
    Bearer(String),
    /// An API key (`x-api-key`, `x-org-api-key`, or a `key_`/`sk_` bearer).
    ApiKey,
}

pub fn credential_of(req: &HttpRequest) -> Credential {
    let headers = req.headers();
    if headers.contains_key("x-api-key") || headers.contains_key("x-org-api-key") {
        return Credential::ApiKey;
    }
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Credential::None;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Credential::None;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credential::None;
    }
    let token = token.trim();
    if token.starts_with("key_") || token.starts_with("sk_") {
        Credential::ApiKey
    } else {
        Credential::Bearer(token.to_owned())
    }
}

/// Verifies access tokens and remembers revoked sessions.
pub struct Authenticator {
    verifier: RwLock<Option<AccessTokenVerifier>>,
    config: TokenConfig,
    jwks_url: String,
    client: reqwest::Client,
    signer: Arc<identity::IdentitySigner>,
    /// Serializes JWKS fetches and remembers when the last one ran.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Session ids revoked recently, until their access tokens have expired.
    revoked_sessions: RwLock<HashMap<String, Instant>>,
}

impl Authenticator {
    pub fn new(
        config: TokenConfig,
        jwks_url: String,
        client: reqwest::Client,
        signer: Arc<identity::IdentitySigner>,
    ) -> Authenticator {
        Authenticator {
            verifier: RwLock::new(None),
            config,
            jwks_url,
            client,
            signer,
            last_fetch: tokio::sync::Mutex::new(None),
            revoked_sessions: RwLock::new(HashMap::new()),
        }
    }

    /// The identity of a request, or why its credential is refused.
    pub async fn identify(&self, credential: Credential) -> Result<Identity, Failure> {
        match credential {
            Credential::None => Ok(Identity::anonymous()),
            Credential::ApiKey => Err(Failure::Unsupported),
            Credential::Bearer(token) => {
                let claims = self.verify(&token).await?;
                if claims
                    .sid
                    .as_deref()
                    .is_some_and(|sid| self.is_revoked(sid))
                {
                    return Err(Failure::Revoked);
                }
                let principal_type = match claims.ptyp {
                    PrincipalType::User | PrincipalType::Service => claims.ptyp,
                    _ => return Err(Failure::Invalid),
                };
                let scopes = claims.scopes();
                Ok(Identity {
                    principal_id: claims.sub,
                    principal_type,
                    workspace_id: claims.wrk,
                    scopes,
                    space_id: None,
                })
            }
        }
    }

    async fn verify(&self, token: &str) -> Result<AccessClaims, Failure> {
        AccessTokenVerifier::kid_of(token).map_err(|_| Failure::Malformed)?;
        match self.verify_with_current(token) {
            Some(Ok(claims)) => return Ok(claims),
            Some(Err(identity::access::AccessTokenError::UnknownKey)) | None => {}
            Some(Err(
                identity::access::AccessTokenError::Malformed
                | identity::access::AccessTokenError::WrongType,
            )) => {
                return Err(Failure::Malformed);
            }
            Some(Err(_)) => return Err(Failure::Invalid),
        }
        // A key we have not seen: auth-service may have published a new one.
        self.refetch_keys().await?;
        match self.verify_with_current(token) {
            Some(Ok(claims)) => Ok(claims),
            Some(Err(identity::access::AccessTokenError::UnknownKey)) => Err(Failure::UnknownKey),
            Some(Err(_)) => Err(Failure::Invalid),
            None => Err(Failure::KeysUnavailable),
        }
    }

    fn verify_with_current(
        &self,
        token: &str,
    ) -> Option<Result<AccessClaims, identity::access::AccessTokenError>> {
        let guard = self.verifier.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|v| v.verify(token))
    }

    /// Fetches the JWKS, at most once per `jwks_min_refetch_secs` however many
    /// requests ask (a token with a made-up `kid` must not make us hammer
    /// auth-service), and once at a time.
    async fn refetch_keys(&self) -> Result<(), Failure> {
        let mut last = self.last_fetch.lock().await;
        let min_interval = Duration::from_secs(self.config.jwks_min_refetch_secs);
        if last.is_some_and(|at| at.elapsed() < min_interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(keys) => {
                let verifier =
                    AccessTokenVerifier::new(&self.config.issuer, &self.config.audience, keys);
                *self.verifier.write().unwrap_or_else(|e| e.into_inner()) = Some(verifier);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %self.jwks_url, "could not fetch the JWKS");
                if self
                    .verifier
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some()
                {
                    Ok(())
                } else {
                    Err(Failure::KeysUnavailable)
                }
            }
        }
    }

    async fn fetch_keys(&self) -> anyhow::Result<PublicKeys> {
        // auth-service, like every service, answers only the gateway.
        let token = self.signer.token_for(&Identity::gateway(), "auth-service");
        let response = self
            .client
            .get(&self.jwks_url)
            .header(identity::HEADER, token)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?;
        let jwks: serde_json::Value = response.json().await?;
        Ok(PublicKeys::from_jwks(&jwks)?)
    }

    fn is_revoked(&self, sid: &str) -> bool {
        let revoked = self
            .revoked_sessions
            .read()
            .unwrap_or_else(|e| e.into_inner());
        revoked
            .get(sid)
            .is_some_and(|until| *until > Instant::now())
    }

    pub fn apply(&self, revocation: &Revocation) {
        if let Revocation::Session { id } = revocation {
            let until =
                Instant::now() + Duration::from_secs(self.config.max_access_token_ttl_secs + 60);
            let mut revoked = self
                .revoked_sessions
                .write()
                .unwrap_or_else(|e| e.into_inner());
            revoked.retain(|_, t| *t > Instant::now());
            revoked.insert(id.clone(), until);
        }
    }

    /// Listens for revocations for as long as the gateway runs.
    pub async fn listen(self: Arc<Self>, cache: cache::Cache) -> anyhow::Result<()> {
        let mut subscription = cache.subscribe(revocation::CHANNEL).await?;
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                match Revocation::from_bytes(&message) {
                    Some(revocation) => self.apply(&revocation),
                    None => tracing::warn!("ignoring a malformed revocation message"),
                }
            }
        });
        Ok(())
    }
}
