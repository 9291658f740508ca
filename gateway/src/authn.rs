//! Who is calling: the gateway verifies the client's credential and turns it
//! into the identity it signs for the services.
//!
//! - Bearer JWTs (user and service-principal access tokens) are verified here,
//!   against auth-service's JWKS, without a call per request.
//! - Workspace API keys (`x-api-key`, SpaceOS `x-org-api-key`, or a bearer
//!   `key_…`) are checked for shape and checksum first (a typo or a forgery costs
//!   no look-up), then introspected at auth-service, with the answer cached.
//! - Space API keys (`sk_…`, bearer or `x-api-key`) likewise, at spaces-service.
//! - System keys (`x-api-key: sys_…`) are compared, as SHA-256 digests in
//!   constant time, with the digests in the gateway's config.
//! - `x-workspace-key` selects the workspace of a user token (membership looked
//!   up at auth-service, cached) or of a system key; a credential bound to one
//!   workspace cannot name another.
//! - Other `Authorization` schemes (e.g. `Basic` on the OAuth token endpoint) are
//!   for the service behind the route and pass through untouched.
//! - Revocations (sessions, keys) arrive on the cache bus and apply at once.

pub use crate::admissions::Admission;
use crate::admissions::{Admitted, Recall, RevocationSubject, now_secs};
use crate::config::{GatewayConfig, TokenConfig};
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderName};
use identity::access::AccessTokenError;
use identity::revocation::{self, Revocation};
use identity::{AccessClaims, AccessTokenVerifier, Identity, PrincipalType, PublicKeys, ScopeSet};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const SYSTEM_KEY_PREFIX: &str = "sys_";

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

/// 401 with the challenge a client's credential answers: the gateway's own
/// refusals (a bad credential, none where one is needed).
pub(crate) fn unauthorized(message: &str) -> service_kit::ApiError {
    service_kit::ApiError::unauthorized(message)
        .with_header("www-authenticate", "Bearer realm=\"spaceport\"")
}

/// The credential a request presents, read from its headers.
pub enum Credential<'a> {
    None,
    /// An access token (JWT).
    Bearer(&'a str),
    /// A workspace API key.
    WorkspaceKey(&'a str),
    /// A space API key (`sk_…`).
    SpaceKey(&'a str),
    /// An operator's system key (`sys_…`).
    SystemKey(&'a str),
    /// Unreadable, or more than one credential.
    Invalid,
}

impl Credential<'_> {
    /// Whether the gateway consumes the credential headers, rather than passing
    /// an `Authorization` header on to the service.
    pub fn consumes_authorization(&self) -> bool {
        !matches!(self, Credential::None)
    }
}

fn classify(token: &str) -> Credential<'_> {
    if token.starts_with("key_") {
        Credential::WorkspaceKey(token)
    } else if token.starts_with("sk_") {
        Credential::SpaceKey(token)
    } else if token.starts_with(SYSTEM_KEY_PREFIX) {
        Credential::SystemKey(token)
    } else {
        Credential::Bearer(token)
    }
}

/// The credential of a request: its headers, and on Tuzzle routes the
/// `?api_key=` of its query (`query_key`). A key in the query beside any
/// credential header is ambiguous, so it is refused.
pub fn credential_of<'a>(
    headers: &'a HeaderMap,
    query_key: Option<&'a QueryKey>,
) -> Credential<'a> {
    const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
    const ORG_API_KEY: HeaderName = HeaderName::from_static("x-org-api-key");
    if let Some(query_key) = query_key {
        let beside = [API_KEY, ORG_API_KEY, AUTHORIZATION]
            .iter()
            .any(|name| headers.contains_key(name));
        // Tuzzle documents space keys (`sk_…`) in the query, nothing else.
        return match &query_key.key {
            Some(key) if !beside && key.starts_with("sk_") => Credential::SpaceKey(key),
            _ => Credential::Invalid,
        };
    }
    // `None`: no key header; `Some(None)`: an unreadable one, or two.
    let mut key_headers = [API_KEY, ORG_API_KEY]
        .into_iter()
        .filter_map(|name| headers.get(name));
    let key = match (key_headers.next(), key_headers.next()) {
        (None, _) => None,
        (Some(value), None) => Some(value.to_str().ok().map(str::trim)),
        (Some(_), Some(_)) => Some(None),
    };
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes()));
    match (key, bearer) {
        (None, None) => Credential::None,
        (None, Some(Ok(token))) => classify(token),
        (Some(Some(key)), None)
            if key.starts_with("key_")
                || key.starts_with("sk_")
                || key.starts_with(SYSTEM_KEY_PREFIX) =>
        {
            classify(key)
        }
        _ => Credential::Invalid,
    }
}

/// The token of a `Bearer` authorization, trimmed: `None` for another scheme
/// (it is the service's), `Err` for one that is not text. The check is
/// UTF-8's rather than `HeaderValue::to_str`'s byte-by-byte one: a token
/// outside the credentials' alphabets fails verification anyway, and is
/// refused as a credential rather than passed on.
fn bearer_token(value: &[u8]) -> Option<Result<&str, ()>> {
    const SCHEME: &[u8] = b"bearer ";
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    Some(
        std::str::from_utf8(&value[SCHEME.len()..])
            .map(str::trim)
            .map_err(|_| ()),
    )
}

/// Tuzzle's `?api_key=` in a request's query, and the query without it (what
/// is forwarded: the key never reaches a service, a log or a metric).
#[derive(Debug)]
pub struct QueryKey {
    /// `None` when the parameter was repeated.
    pub key: Option<String>,
    pub rest: String,
}

impl QueryKey {
    /// `None` when the query has no `api_key`.
    pub fn of(query: &str) -> Option<QueryKey> {
        if !query.contains("api_key") {
            return None;
        }
        let mut keys = Vec::new();
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == "api_key" {
                keys.push(value.trim().to_owned());
            } else {
                rest.append_pair(&name, &value);
            }
        }
        (!keys.is_empty()).then(|| QueryKey {
            key: (keys.len() == 1).then(|| keys.remove(0)),
            rest: rest.finish(),
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct CacheLookup {
    /// `api_key_introspection`, `space_key_introspection`, `membership`,
    /// `jwks` (a token verified with the keys in hand, or a fetch) or
    /// `admissions` (a bearer token or API key admitted before, or the same
    /// acting in a workspace its `x-workspace-key` selected before,
    /// recognised in this gateway's memory: hits only; its misses are the
    /// `jwks`, introspection and membership lookups).
    pub cache: &'static str,
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// Hits and misses of the gateway's credential caches.
pub type CacheLookups = prometheus_client::metrics::family::Family<
    CacheLookup,
    prometheus_client::metrics::counter::Counter,
>;

/// What the gateway remembers of an introspected API key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyInfo {
    active: bool,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    workspace_id: Option<String>,
    /// Space keys only.
    #[serde(default)]
    space_id: Option<String>,
    /// Workspace API keys bound to one organization only.
    #[serde(default)]
    organization_id: Option<String>,
    #[serde(default)]
    scopes: Option<ScopeSet>,
    #[serde(default)]
    expires_at: Option<String>,
    /// When the gateway asked (unix seconds): the answer is good for
    /// `api_key_cache_secs` from then, wherever it is kept.
    #[serde(default)]
    fetched_at: u64,
}

impl KeyInfo {
    /// The unix second from which the answer is no longer used: its
    /// cache time after it was fetched, and never past the key's expiry.
    fn good_until(&self, cache_secs: u64) -> u64 {
        let expiry = self
            .expires_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(u64::MAX, |t| t.timestamp().max(0) as u64);
        (self.fetched_at + cache_secs).min(expiry)
    }
}

/// Where a kind of key is introspected, and how its answers are cached.
struct Introspection {
    upstream: Arc<crate::upstreams::Replicas>,
    path: &'static str,
    /// The service answering: the audience of the gateway's identity token.
    audience: &'static str,
    /// Prefix of the cache entries and metric label.
    label: &'static str,
    kind: KeyKind,
}

#[derive(Clone, Copy)]
enum KeyKind {
    Workspace,
    Space,
}

/// The shared cache's key for a key's introspection: a hash of the key,
/// never the key.
fn introspection_cache_key(kind: &Introspection, key: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut cache_key = String::with_capacity(kind.label.len() + 1 + 64);
    cache_key.push_str(kind.label);
    cache_key.push(':');
    for b in digest {
        let _ = write!(cache_key, "{b:02x}");
    }
    cache_key
}

/// Verifies access tokens and API keys, and remembers revocations.
pub struct Authenticator {
    verifier: RwLock<Option<AccessTokenVerifier>>,
    config: TokenConfig,
    /// `tokens.jwks_url`, if set; else auth-service's `/.well-known/jwks.json`.
    jwks_url: Option<String>,
    pub(crate) auth: Arc<crate::upstreams::Replicas>,
    workspace_keys: Introspection,
    space_keys: Introspection,
    /// SHA-256 digests of the accepted system keys.
    system_keys: Vec<[u8; 32]>,
    pub(crate) cache: cache::Cache,
    pub(crate) client: reqwest::Client,
    pub(crate) signer: Arc<identity::IdentitySigner>,
    /// Serializes JWKS fetches and remembers when the last one ran.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Session ids revoked recently, until their access tokens have expired.
    revoked_sessions: RwLock<HashMap<String, Instant>>,
    /// API key ids revoked recently, until cached introspections have expired.
    revoked_keys: RwLock<HashMap<String, Instant>>,
    lookups: CacheLookups,
    /// (workspace, user) → when their membership last changed (unix seconds):
    /// the member's tokens for that workspace issued up to then are refused.
    pub(crate) changed_memberships: RwLock<HashMap<(String, String), (u64, Instant)>>,
    /// Bearer tokens admitted, until they expire.
    admitted: Admitted,
    /// API keys admitted, by the hash their introspection is cached under,
    /// until that answer's cache time is up.
    admitted_keys: Admitted,
    /// Requests without a credential all stand for the one anonymous caller.
    anonymous: Arc<Admission>,
    /// `gateway_cache_lookups{cache="admissions",result="hit"}`, at hand: it
    /// counts nearly every request.
    admissions_recalled: prometheus_client::metrics::counter::Counter,
}

/// Bearer tokens remembered at once (a token, its identity and its identity
/// tokens: a few kilobytes each at most).
const ADMITTED_CAPACITY: usize = 10_000;

impl Authenticator {
    pub fn new(
        config: &GatewayConfig,
        upstreams: &crate::upstreams::Pool,
        cache: cache::Cache,
        client: reqwest::Client,
        signer: Arc<identity::IdentitySigner>,
    ) -> Authenticator {
        let lookups = CacheLookups::default();
        let admissions_recalled = lookups
            .get_or_create(&CacheLookup {
                cache: "admissions",
                result: "hit",
            })
            .clone();
        Authenticator {
            verifier: RwLock::new(None),
            config: config.tokens.clone(),
            jwks_url: Some(config.tokens.jwks_url.clone()).filter(|u| !u.is_empty()),
            auth: upstreams.auth.clone(),
            workspace_keys: Introspection {
                upstream: upstreams.auth.clone(),
                path: "/internal/api-keys/introspect",
                audience: "auth-service",
                label: "api_key_introspection",
                kind: KeyKind::Workspace,
            },
            space_keys: Introspection {
                upstream: upstreams.spaces.clone(),
                path: "/internal/space-keys/introspect",
                audience: "spaces-service",
                label: "space_key_introspection",
                kind: KeyKind::Space,
            },
            // Validated with the config.
            system_keys: config.system_keys.digests().unwrap_or_default(),
            cache,
            client,
            signer,
            last_fetch: tokio::sync::Mutex::new(None),
            revoked_sessions: RwLock::new(HashMap::new()),
            revoked_keys: RwLock::new(HashMap::new()),
            changed_memberships: RwLock::new(HashMap::new()),
            admitted: Admitted::new(ADMITTED_CAPACITY),
            admitted_keys: Admitted::new(ADMITTED_CAPACITY),
            anonymous: Admission::new(Identity::anonymous()),
            admissions_recalled,
            lookups,
        }
    }

    /// Who a request's credential stands for, or why it is refused.
    pub async fn identify(&self, credential: Credential<'_>) -> Result<Arc<Admission>, Failure> {
        match credential {
            Credential::None => Ok(self.anonymous.clone()),
            Credential::Invalid => Err(Failure::Malformed),
            Credential::SpaceKey(key) => self.key(&self.space_keys, key).await,
            Credential::SystemKey(key) => self.system_key(key).map(Admission::new),
            Credential::WorkspaceKey(key) => self.key(&self.workspace_keys, key).await,
            Credential::Bearer(token) => self.bearer(token).await,
        }
    }

    /// An access token: recognised if admitted before (revocations checked
    /// again only when one has arrived since), else verified, checked and
    /// remembered until it expires.
    async fn bearer(&self, token: &str) -> Result<Arc<Admission>, Failure> {
        if let Some(admission) = self.recognised(&self.admitted, token)? {
            return Ok(admission);
        }
        let generations = self.admitted.generations();
        let claims = self.verify(token).await?;
        let subject = RevocationSubject {
            sid: claims.sid.clone(),
            workspace: claims.wrk.clone(),
            subject: claims.sub.clone(),
            issued_at: claims.iat,
            key_id: None,
        };
        self.check_revocations(&subject)?;
        let principal_type = match claims.ptyp {
            PrincipalType::User | PrincipalType::Service => claims.ptyp,
            _ => return Err(Failure::Invalid),
        };
        let scopes = claims.scopes();
        let admission = Admission::new(Identity {
            principal_id: claims.sub,
            principal_type,
            workspace_id: claims.wrk,
            scopes,
            space_id: None,
            organization_id: None,
        });
        self.admitted
            .remember(token, admission.clone(), claims.exp, subject, generations);
        Ok(admission)
    }

    /// The admission remembered under `key`, checked again against the
    /// revocation lists if one has arrived since its last check; `None` when
    /// nothing good is remembered.
    fn recognised(
        &self,
        admitted: &Admitted,
        key: &str,
    ) -> Result<Option<Arc<Admission>>, Failure> {
        let admission = match admitted.recall(key) {
            Recall::Admitted(admission) => Some(admission),
            Recall::Recheck(subject, revocations) => {
                self.check_revocations(&subject)?;
                admitted.checked(key, revocations)
            }
            Recall::Unknown => None,
        };
        if admission.is_some() {
            self.recalled();
        }
        Ok(admission)
    }

    /// Counts an admission recognised in memory.
    pub(crate) fn recalled(&self) {
        self.admissions_recalled.inc();
    }

    /// Revocations received so far (every one bumps it).
    pub(crate) fn revocation_count(&self) -> u64 {
        self.admitted.generations().1
    }

    /// A revoked key, a token of a revoked session, or one issued before its
    /// holder's membership of its workspace changed, is refused.
    fn check_revocations(&self, subject: &RevocationSubject) -> Result<(), Failure> {
        if subject
            .key_id
            .as_deref()
            .is_some_and(|id| listed(&self.revoked_keys, id))
        {
            return Err(Failure::Revoked);
        }
        if subject
            .sid
            .as_deref()
            .is_some_and(|sid| listed(&self.revoked_sessions, sid))
        {
            return Err(Failure::Revoked);
        }
        if let Some(workspace) = &subject.workspace
            && self.membership_changed_since(workspace, &subject.subject, subject.issued_at)
        {
            return Err(Failure::Revoked);
        }
        Ok(())
    }

    async fn verify(&self, token: &str) -> Result<AccessClaims, Failure> {
        match self.verify_with_current(token) {
            Some(Ok(claims)) => {
                self.count("jwks", "hit");
                return Ok(claims);
            }
            Some(Err(AccessTokenError::UnknownKey)) | None => {}
            Some(Err(AccessTokenError::Malformed | AccessTokenError::WrongType)) => {
                return Err(Failure::Malformed);
            }
            Some(Err(_)) => return Err(Failure::Invalid),
        }
        // Not a token at all: nothing to fetch keys for.
        AccessTokenVerifier::kid_of(token).map_err(|_| Failure::Malformed)?;
        // A key we have not seen: auth-service may have published a new one.
        self.count("jwks", "miss");
        self.refetch_keys().await?;
        match self.verify_with_current(token) {
            Some(Ok(claims)) => Ok(claims),
            Some(Err(AccessTokenError::UnknownKey)) => Err(Failure::UnknownKey),
            Some(Err(_)) => Err(Failure::Invalid),
            None => Err(Failure::KeysUnavailable),
        }
    }

    /// Checks `token` against the keys in hand (the verifier remembers tokens
    /// that verified, until they expire; revocations are the caller's, checked
    /// on every request).
    fn verify_with_current(&self, token: &str) -> Option<Result<AccessClaims, AccessTokenError>> {
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
                // A key withdrawn from the set takes its tokens with it.
                self.admitted.keys_changed();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch the JWKS");
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
            .get(
                self.jwks_url
                    .clone()
                    .unwrap_or_else(|| self.auth.url("/.well-known/jwks.json")),
            )
            .header(identity::HEADER, token)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?;
        let jwks: serde_json::Value = response.json().await?;
        Ok(PublicKeys::from_jwks(&jwks)?)
    }

    /// An API key (workspace or space): recognised if admitted before and
    /// its introspection is still good, else introspected (through the
    /// shared cache) and remembered until the answer's cache time is up.
    /// Revocations of its id are checked again once one has arrived.
    async fn key(&self, kind: &Introspection, key: &str) -> Result<Arc<Admission>, Failure> {
        // The shape (and a workspace key's checksum) first: a typo or a
        // forgery costs no look-up.
        let workspace_key = match kind.kind {
            KeyKind::Workspace => {
                Some(identity::credentials::parse_workspace_key(key).ok_or(Failure::Malformed)?)
            }
            KeyKind::Space if identity::credentials::is_space_key(key) => None,
            KeyKind::Space => return Err(Failure::Malformed),
        };
        let cache_key = introspection_cache_key(kind, key);
        if let Some(admission) = self.recognised(&self.admitted_keys, &cache_key)? {
            return Ok(admission);
        }
        let generations = self.admitted_keys.generations();
        let info = self.introspect(kind, key, &cache_key).await?;
        let good_until = info.good_until(self.config.api_key_cache_secs);
        let identity = match workspace_key {
            Some(parts) => self.workspace_key(&parts, info)?,
            None => self.space_key(info)?,
        };
        let subject = RevocationSubject {
            key_id: Some(identity.principal_id.clone()),
            ..RevocationSubject::default()
        };
        let admission = Admission::new(identity);
        // (An answer cached without its time is used once, not remembered.)
        if good_until > now_secs() {
            self.admitted_keys.remember(
                &cache_key,
                admission.clone(),
                good_until,
                subject,
                generations,
            );
        }
        Ok(admission)
    }

    fn workspace_key(
        &self,
        parts: &identity::credentials::WorkspaceKey<'_>,
        info: KeyInfo,
    ) -> Result<Identity, Failure> {
        let (true, Some(key_id), Some(workspace_id)) =
            (info.active, info.key_id, info.workspace_id)
        else {
            return Err(Failure::Invalid);
        };
        if workspace_id != parts.workspace_id {
            return Err(Failure::Invalid);
        }
        if listed(&self.revoked_keys, &key_id) {
            return Err(Failure::Revoked);
        }
        Ok(Identity {
            principal_id: key_id,
            principal_type: PrincipalType::ApiKey,
            workspace_id: Some(workspace_id),
            scopes: info.scopes.unwrap_or_default(),
            space_id: None,
            organization_id: info.organization_id,
        })
    }

    fn space_key(&self, info: KeyInfo) -> Result<Identity, Failure> {
        let (true, Some(key_id), Some(workspace_id), Some(space_id)) =
            (info.active, info.key_id, info.workspace_id, info.space_id)
        else {
            return Err(Failure::Invalid);
        };
        if listed(&self.revoked_keys, &key_id) {
            return Err(Failure::Revoked);
        }
        Ok(Identity {
            principal_id: key_id,
            principal_type: PrincipalType::SpaceKey,
            workspace_id: Some(workspace_id),
            // What a space key may do within its one space; spaces-service
            // keeps it to that space.
            scopes: [identity::Scope::SPACES_READ, identity::Scope::SPACES_WRITE]
                .into_iter()
                .collect(),
            space_id: Some(space_id),
            organization_id: None,
        })
    }

    /// An operator key: its digest compared with every configured one, in
    /// constant time, so timing tells nothing about how close a guess was.
    fn system_key(&self, key: &str) -> Result<Identity, Failure> {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let secret = &key[SYSTEM_KEY_PREFIX.len()..];
        if !(32..=128).contains(&secret.len())
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Failure::Malformed);
        }
        let digest: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
        let found = self
            .system_keys
            .iter()
            .fold(subtle::Choice::from(0), |acc, known| {
                acc | known.ct_eq(&digest)
            });
        if !bool::from(found) {
            return Err(Failure::Invalid);
        }
        let id: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Identity {
            principal_id: format!("sys_{id}"),
            principal_type: PrincipalType::System,
            workspace_id: None,
            scopes: ScopeSet::all(),
            space_id: None,
            organization_id: None,
        })
    }

    /// The owning service's answer about a key, cached in the shared cache under
    /// a hash of the key (never the key): active keys for `api_key_cache_secs`
    /// (not past their expiry), unknown ones for `api_key_negative_cache_secs`.
    async fn introspect(
        &self,
        kind: &Introspection,
        key: &str,
        cache_key: &str,
    ) -> Result<KeyInfo, Failure> {
        if let Ok(Some(bytes)) = self.cache.get(cache_key).await
            && let Ok(info) = serde_json::from_slice::<KeyInfo>(&bytes)
        {
            self.count(kind.label, "hit");
            return Ok(info);
        }
        self.count(kind.label, "miss");
        let mut info: KeyInfo = self
            .ask_internal(
                &kind.upstream,
                kind.path,
                kind.audience,
                &serde_json::json!({ "key": key }),
            )
            .await
            .ok_or(Failure::KeysUnavailable)?;
        info.fetched_at = now_secs();
        let ttl = if info.active {
            let cap = self.config.api_key_cache_secs;
            let until_expiry = info
                .expires_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| (t.timestamp() - chrono::Utc::now().timestamp()).max(1) as u64);
            Duration::from_secs(until_expiry.map_or(cap, |s| s.min(cap)))
        } else {
            Duration::from_secs(self.config.api_key_negative_cache_secs)
        };
        if let Ok(bytes) = serde_json::to_vec(&info) {
            let _ = self.cache.set(cache_key, &bytes, Some(ttl)).await;
        }
        Ok(info)
    }

    /// POSTs `body` to an upstream's `/internal/*` route with the gateway's
    /// own identity token, and reads the envelope's `data`; `None` (logged)
    /// when the upstream cannot answer.
    pub(crate) async fn ask_internal<T: serde::de::DeserializeOwned>(
        &self,
        upstream: &crate::upstreams::Replicas,
        path: &str,
        audience: &str,
        body: &serde_json::Value,
    ) -> Option<T> {
        let token = self.signer.token_for(&Identity::gateway(), audience);
        let response = self
            .client
            .post(upstream.url(path))
            .header(identity::HEADER, token)
            .json(body)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(|r| r.error_for_status());
        let answer: serde_json::Value = match response {
            Ok(r) => r.json().await.ok()?,
            Err(e) => {
                tracing::warn!(error = %e, upstream = upstream.name(), path, "internal call failed");
                return None;
            }
        };
        serde_json::from_value(answer["data"].clone()).ok()
    }

    pub fn apply(&self, revocation: &Revocation) {
        self.record(revocation);
        // After it is recorded: admitted credentials are checked again from now.
        self.admitted.revoked();
        self.admitted_keys.revoked();
    }

    fn record(&self, revocation: &Revocation) {
        match revocation {
            Revocation::Session { id } => remember(
                &self.revoked_sessions,
                id,
                Duration::from_secs(self.config.max_access_token_ttl_secs + 60),
            ),
            Revocation::ApiKey { id } | Revocation::SpaceKey { id } => remember(
                &self.revoked_keys,
                id,
                Duration::from_secs(self.config.api_key_cache_secs + 60),
            ),
            Revocation::Membership {
                workspace_id,
                user_id,
            } => {
                let now_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let until = Instant::now()
                    + Duration::from_secs(self.config.max_access_token_ttl_secs + 60);
                let mut changed = self
                    .changed_memberships
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                changed.retain(|_, (_, expiry)| *expiry > now);
                changed.insert((workspace_id.clone(), user_id.clone()), (now_unix, until));
            }
        }
    }

    /// Listens for revocations for as long as the gateway runs.
    pub async fn listen(self: Arc<Self>, cache: cache::Cache) -> anyhow::Result<()> {
        let mut subscription = cache.subscribe(revocation::CHANNEL).await?;
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                match Revocation::from_bytes(&message) {
                    Some(revocation) => {
                        self.apply(&revocation);
                        if let Revocation::Membership {
                            workspace_id,
                            user_id,
                        } = &revocation
                        {
                            self.forget_membership(workspace_id, user_id).await;
                        }
                    }
                    None => tracing::warn!("ignoring a malformed revocation message"),
                }
            }
        });
        Ok(())
    }
}

impl Authenticator {
    /// Whether a token issued at `issued_at` predates a change of the member's
    /// membership (ties count as before: a token from the very second of the
    /// change is refused, and the next refresh gets a good one).
    pub(crate) fn membership_changed_since(
        &self,
        workspace: &str,
        user: &str,
        issued_at: u64,
    ) -> bool {
        let changed = self
            .changed_memberships
            .read()
            .unwrap_or_else(|e| e.into_inner());
        changed
            .get(&(workspace.to_owned(), user.to_owned()))
            .is_some_and(|(at, expiry)| *expiry > Instant::now() && issued_at <= *at)
    }
}

impl Authenticator {
    pub(crate) fn config(&self) -> &TokenConfig {
        &self.config
    }

    pub(crate) fn count(&self, cache: &'static str, result: &'static str) {
        self.lookups
            .get_or_create(&CacheLookup { cache, result })
            .inc();
    }

    /// The counters, for the metrics registry.
    pub fn lookups(&self) -> CacheLookups {
        self.lookups.clone()
    }
}

fn listed(list: &RwLock<HashMap<String, Instant>>, id: &str) -> bool {
    let list = list.read().unwrap_or_else(|e| e.into_inner());
    list.get(id).is_some_and(|until| *until > Instant::now())
}

fn remember(list: &RwLock<HashMap<String, Instant>>, id: &str, for_: Duration) {
    let mut list = list.write().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    list.retain(|_, t| *t > now);
    list.insert(id.to_owned(), now + for_);
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn a_bearer_token_is_read_from_its_scheme() {
        assert_eq!(bearer_token(b"Bearer abc.def"), Some(Ok("abc.def")));
        assert_eq!(bearer_token(b"bEARER   abc  "), Some(Ok("abc")));
        assert_eq!(bearer_token(b"Bearer "), Some(Ok("")));
        // Another scheme is the service's business.
        assert_eq!(bearer_token(b"Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer\tabc"), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        // A token that is not text is a bad credential, not no credential.
        assert_eq!(bearer_token(b"Bearer \xff\xfe"), Some(Err(())));
    }
}
