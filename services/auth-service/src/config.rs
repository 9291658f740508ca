//! auth-service configuration (`AUTH__…`).

use serde::{Deserialize, Serialize};
use service_kit::config::{
    CacheConfig, ConfigError, DatabaseConfig, HttpConfig, IdentityConfig, LogConfig, Secret,
    ServiceConfig,
};

/// `secret.*`: the root secret every other key of the service is derived from
/// (the key that seals signing keys at rest, the key that hashes one-time codes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// 32 or more random bytes, base64. Clusters set it from a Secret; every
    /// replica must have the same one.
    pub key: Secret,
    /// Used when `key` is empty: read, or created (mode 0600) on first start.
    pub key_file: String,
}

/// `otp.*`: one-time sign-in codes and their limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtpConfig {
    pub ttl_secs: u64,
    /// Wrong guesses before a code is burnt.
    pub max_attempts: u32,
    /// Wrong guesses per email per hour, across all its codes: requesting a new
    /// code does not buy more guesses.
    pub failed_guess_budget: u32,
    /// A new code for the same email at most this often.
    pub resend_interval_secs: u64,
    /// Codes per email per hour.
    pub hourly_limit: u32,
    /// Code requests per client IP per hour.
    pub ip_hourly_limit: u32,
}

/// `api_keys.*`: the visible parts of workspace keys,
/// `key_<shard>.<location>.<workspace>.<secret>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Lowercase letters and digits, 1–8.
    pub shard: String,
    /// Two to four capital letters, e.g. `UK`.
    pub location: String,
}

/// `magic_links.*`: where sign-in links point.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MagicLinkConfig {
    /// The page a link opens when the client names none; it receives `?token=`.
    pub default_redirect_uri: String,
    /// A client's `redirect_uri` must have the origin of one of these and a path
    /// below its path.
    #[serde(default)]
    pub allowed_redirect_uris: Vec<String>,
}

/// One OAuth 2.0 sign-in provider; an empty `client_id` turns it off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub client_id: String,
    pub client_secret: Secret,
    pub authorize_url: String,
    pub token_url: String,
    /// Google: the OpenID userinfo endpoint; GitHub: `/user/emails`.
    pub userinfo_url: String,
    pub scope: String,
}

/// `social.*`: sign-in with Google and GitHub. The callback the providers must
/// allow is `<tokens.issuer>/v1/auth/callback/<provider>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocialConfig {
    pub google: ProviderConfig,
    pub github: ProviderConfig,
}

impl Default for SocialConfig {
    fn default() -> Self {
        SocialConfig {
            google: ProviderConfig {
                client_id: String::new(),
                client_secret: Secret::default(),
                authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
                token_url: "https://oauth2.googleapis.com/token".into(),
                userinfo_url: "https://openidconnect.googleapis.com/v1/userinfo".into(),
                scope: "openid email".into(),
            },
            github: ProviderConfig {
                client_id: String::new(),
                client_secret: Secret::default(),
                authorize_url: "https://github.com/login/oauth/authorize".into(),
                token_url: "https://github.com/login/oauth/access_token".into(),
                userinfo_url: "https://api.github.com/user/emails".into(),
                scope: "user:email".into(),
            },
        }
    }
}

/// `tokens.*`: access and refresh tokens and their signing keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `iss` of access tokens: the public URL of the platform.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_days: u64,
    /// A new signing key is made when the active one is this old.
    pub key_rotation_days: u64,
    /// A new key is in the JWKS this long before it signs, so verifiers that
    /// cache the JWKS know it before they see a token signed with it.
    pub key_publish_lead_secs: u64,
    /// Seconds a replica remembers a verified service-principal client id and
    /// secret, so that repeating the exchange reads nothing from the database;
    /// 0 turns it off. Rotating the secret or deleting the principal drops it on
    /// every replica at once (the cache bus); this only bounds how long a
    /// replica that missed that message still takes the old secret. At most 300.
    pub client_cache_ttl_secs: u64,
    /// Client id and secret pairs remembered per replica; when full, the oldest
    /// go first.
    pub client_cache_capacity: u32,
}

/// `scopes.*`: scopes this deployment grants beyond the built-in catalog
/// (`identity::scopes::CATALOG`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopesConfig {
    /// Each a `resource:action` (lowercase letters, digits, `_`, `-`). Owners
    /// and admins hold them; members and viewers hold those ending in `:read`.
    #[serde(default)]
    pub extra: Vec<String>,
}

impl ScopesConfig {
    /// The deployment's catalog: the built-in one and [`Self::extra`].
    pub fn catalog(&self) -> Result<identity::scopes::Catalog, ConfigError> {
        identity::scopes::Catalog::with_extra(self.extra.iter().map(String::as_str))
            .map_err(|e| ConfigError::invalid("scopes.extra", e.to_string()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub identity: IdentityConfig,
    pub log: LogConfig,
    pub secret: SecretConfig,
    pub tokens: TokenConfig,
    pub otp: OtpConfig,
    pub api_keys: ApiKeyConfig,
    pub magic_links: MagicLinkConfig,
    pub social: SocialConfig,
    /// An empty section vanishes from the defaults layer: hence the default.
    #[serde(default)]
    pub scopes: ScopesConfig,
    pub mail: mail::MailConfig,
    /// Where `member.added` and `member.removed` go (the outbox relay).
    pub events: events::config::OutboxConfig,
}

impl AuthConfig {
    pub fn defaults() -> AuthConfig {
        let base = ServiceConfig::defaults(8081, "auth");
        AuthConfig {
            http: base.http,
            database: base.database,
            cache: base.cache,
            identity: base.identity,
            log: base.log,
            secret: SecretConfig {
                key: Secret::default(),
                key_file: "./data/auth-secret.key".into(),
            },
            tokens: TokenConfig {
                issuer: "http://localhost:8080".into(),
                audience: "spaceport".into(),
                access_token_ttl_secs: 3600,
                refresh_token_ttl_days: 30,
                key_rotation_days: 30,
                key_publish_lead_secs: 600,
                client_cache_ttl_secs: 60,
                client_cache_capacity: 10_000,
            },
            otp: OtpConfig {
                ttl_secs: 600,
                max_attempts: 5,
                failed_guess_budget: 10,
                resend_interval_secs: 60,
                hourly_limit: 5,
                ip_hourly_limit: 50,
            },
            api_keys: ApiKeyConfig {
                shard: "01".into(),
                location: "UK".into(),
            },
            magic_links: MagicLinkConfig {
                default_redirect_uri: "http://localhost:8080/auth/magic-link".into(),
                allowed_redirect_uris: Vec::new(),
            },
            social: SocialConfig::default(),
            scopes: ScopesConfig::default(),
            mail: mail::MailConfig::default(),
            events: events::config::OutboxConfig::default(),
        }
    }
}

service_kit::service_settings!(AuthConfig, validate = AuthConfig::check_sections);

/// `tokens.client_cache_ttl_secs` bounds how long a replica that missed a
/// revocation on the bus still takes an old client secret: kept short.
const MAX_CLIENT_CACHE_TTL_SECS: u64 = 300;

impl AuthConfig {
    /// What the types cannot say: ranges, schemes, cross-field rules.
    fn check_sections(&self) -> Result<(), ConfigError> {
        let t = &self.tokens;
        if !(60..=86_400).contains(&t.access_token_ttl_secs) {
            return Err(ConfigError::invalid(
                "tokens.access_token_ttl_secs",
                "must be between 60 and 86400",
            ));
        }
        if !(1..=365).contains(&t.refresh_token_ttl_days) {
            return Err(ConfigError::invalid(
                "tokens.refresh_token_ttl_days",
                "must be between 1 and 365",
            ));
        }
        if t.key_rotation_days == 0 {
            return Err(ConfigError::invalid(
                "tokens.key_rotation_days",
                "must be at least 1",
            ));
        }
        if t.client_cache_ttl_secs > MAX_CLIENT_CACHE_TTL_SECS {
            return Err(ConfigError::invalid(
                "tokens.client_cache_ttl_secs",
                format!("must be between 0 (off) and {MAX_CLIENT_CACHE_TTL_SECS}"),
            ));
        }
        if !(1..=1_000_000).contains(&t.client_cache_capacity) {
            return Err(ConfigError::invalid(
                "tokens.client_cache_capacity",
                "must be between 1 and 1000000",
            ));
        }
        if t.issuer.trim().is_empty() || t.audience.trim().is_empty() {
            return Err(ConfigError::invalid(
                "tokens.issuer",
                "issuer and audience must be set",
            ));
        }
        if !identity::credentials::valid_shard(&self.api_keys.shard) {
            return Err(ConfigError::invalid(
                "api_keys.shard",
                "1 to 8 lowercase letters or digits",
            ));
        }
        if !identity::credentials::valid_location(&self.api_keys.location) {
            return Err(ConfigError::invalid(
                "api_keys.location",
                "2 to 4 capital letters",
            ));
        }
        for (key, uri) in std::iter::once((
            "magic_links.default_redirect_uri",
            &self.magic_links.default_redirect_uri,
        ))
        .chain(
            self.magic_links
                .allowed_redirect_uris
                .iter()
                .map(|u| ("magic_links.allowed_redirect_uris", u)),
        ) {
            match url::Url::parse(uri) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(ConfigError::invalid(
                        key,
                        format!("{uri}: must be an http(s) URL"),
                    ));
                }
            }
        }
        for (name, p) in [
            ("google", &self.social.google),
            ("github", &self.social.github),
        ] {
            for (field, value) in [
                ("authorize_url", &p.authorize_url),
                ("token_url", &p.token_url),
                ("userinfo_url", &p.userinfo_url),
            ] {
                if url::Url::parse(value).map(|u| matches!(u.scheme(), "http" | "https"))
                    != Ok(true)
                {
                    return Err(ConfigError::invalid(
                        &format!("social.{name}.{field}"),
                        "must be an http(s) URL",
                    ));
                }
            }
            if !p.client_id.is_empty() && p.client_secret.expose().is_empty() {
                return Err(ConfigError::invalid(
                    &format!("social.{name}.client_secret"),
                    "is required with a client_id",
                ));
            }
        }
        let o = &self.otp;
        if !(60..=3600).contains(&o.ttl_secs) {
            return Err(ConfigError::invalid(
                "otp.ttl_secs",
                "must be between 60 and 3600",
            ));
        }
        for (key, value) in [
            ("otp.max_attempts", o.max_attempts),
            ("otp.failed_guess_budget", o.failed_guess_budget),
            ("otp.hourly_limit", o.hourly_limit),
            ("otp.ip_hourly_limit", o.ip_hourly_limit),
            ("otp.resend_interval_secs", o.resend_interval_secs as u32),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        self.scopes.catalog()?;
        self.events.validate()?;
        self.mail.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_section_is_checked_and_named() {
        let mut config = AuthConfig::defaults();
        config.events.stream_url = Secret::new("memory://devstack");
        config.check_sections().unwrap();
        type Spoil = fn(&mut AuthConfig);
        let cases: [(&str, Spoil); 4] = [
            ("events.stream_url", |c| {
                c.events.stream_url = Secret::new("http://localhost:6379")
            }),
            ("events.relay_batch", |c| c.events.relay_batch = 0),
            ("events.relay_interval_ms", |c| {
                c.events.relay_interval_ms = 0
            }),
            ("events.retention_hours", |c| c.events.retention_hours = 0),
        ];
        for (key, bad) in cases {
            let mut config = AuthConfig::defaults();
            bad(&mut config);
            let err = config.check_sections().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn the_client_cache_settings_are_checked_and_named() {
        let mut config = AuthConfig::defaults();
        config.tokens.client_cache_ttl_secs = 0;
        config.check_sections().expect("0 turns the memory off");
        config.tokens.client_cache_ttl_secs = 300;
        config.check_sections().unwrap();
        type Spoil = fn(&mut AuthConfig);
        let cases: [(&str, Spoil); 3] = [
            ("tokens.client_cache_ttl_secs", |c| {
                c.tokens.client_cache_ttl_secs = 301
            }),
            ("tokens.client_cache_capacity", |c| {
                c.tokens.client_cache_capacity = 0
            }),
            ("tokens.client_cache_capacity", |c| {
                c.tokens.client_cache_capacity = 1_000_001
            }),
        ];
        for (key, bad) in cases {
            let mut config = AuthConfig::defaults();
            bad(&mut config);
            let err = config.check_sections().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn extra_scopes_are_checked_and_named() {
        let mut config = AuthConfig::defaults();
        config.scopes.extra = vec!["reports:read".into(), "reports:export".into()];
        config.check_sections().unwrap();
        let catalog = config.scopes.catalog().unwrap();
        assert!(catalog.contains(&identity::Scope::parse("reports:export").unwrap()));
        for bad in ["Reports:read", "reports", "reports:read:all", ""] {
            config.scopes.extra = vec!["reports:read".into(), bad.into()];
            let err = config.check_sections().unwrap_err().to_string();
            assert!(err.contains("scopes.extra"), "{bad}: {err}");
        }
    }
}
