//! Layered configuration: built-in defaults → optional TOML file → environment
//! variables with a per-part prefix and `__` for nesting (`AUTH__DATABASE__URL`).
//!
//! Unknown keys are refused (a typo in a variable name must not be silently
//! ignored), and every failure names the exact key.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// A secret value: `Debug` and `Display` never print it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Serialization only feeds the defaults layer of the loader.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `http.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// Worker threads; 0 = one per core.
    pub workers: usize,
    /// How long in-flight requests may run after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Largest accepted JSON body.
    pub json_limit_bytes: usize,
}

impl HttpConfig {
    pub fn on_port(port: u16) -> Self {
        HttpConfig {
            addr: SocketAddr::from(([0, 0, 0, 0], port)),
            workers: 0,
            shutdown_timeout_secs: 20,
            json_limit_bytes: 256 * 1024,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.json_limit_bytes == 0 {
            return Err(ConfigError::invalid(
                "http.json_limit_bytes",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// `database.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` / `postgresql://…`, or `sqlite://PATH` / a bare file path.
    pub url: Secret,
    pub pool_size: u32,
    /// How long to wait for a pooled connection before failing the request.
    pub connect_timeout_secs: u64,
    /// Apply pending migrations at start-up (the Kubernetes Job runs `migrate` instead).
    pub migrate_on_start: bool,
}

impl DatabaseConfig {
    pub fn sqlite(path: &str) -> Self {
        DatabaseConfig {
            url: Secret::new(format!("sqlite://{path}")),
            pool_size: 8,
            connect_timeout_secs: 5,
            migrate_on_start: true,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose();
        if url.trim().is_empty() {
            return Err(ConfigError::invalid("database.url", "must not be empty"));
        }
        if url.contains("://")
            && !["postgres://", "postgresql://", "sqlite://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
        {
            return Err(ConfigError::invalid(
                "database.url",
                "unsupported scheme (expected postgres://, postgresql://, sqlite:// or a file path)",
            ));
        }
        if self.pool_size == 0 {
            return Err(ConfigError::invalid(
                "database.pool_size",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `cache.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// `redis://…`, `rediss://…` or `memory://` (in-process).
    pub url: Secret,
    /// Prefix of every key, so services can share one Redis.
    pub key_prefix: String,
    /// Prefix of the platform's pub/sub channels (the revocation bus): the same
    /// on every part sharing the Redis, so the gateways hear what the services
    /// publish.
    pub bus_prefix: String,
}

/// The bus prefix every part uses unless configured otherwise.
pub const DEFAULT_BUS_PREFIX: &str = "spaceport:";

impl CacheConfig {
    pub fn memory(key_prefix: &str) -> Self {
        CacheConfig {
            url: Secret::new("memory://"),
            key_prefix: key_prefix.to_owned(),
            bus_prefix: DEFAULT_BUS_PREFIX.to_owned(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose();
        if !["redis://", "rediss://", "memory://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(ConfigError::invalid(
                "cache.url",
                "unsupported scheme (expected redis://, rediss:// or memory://)",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// `log.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info` or `info,booking_service=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))
    }
}

/// The sections every server has; a part's own config adds its own on top.
pub trait Settings: DeserializeOwned + Serialize + fmt::Debug {
    fn http(&self) -> &HttpConfig;
    fn http_mut(&mut self) -> &mut HttpConfig;
    fn log(&self) -> &LogConfig;
    fn database(&self) -> Option<&DatabaseConfig> {
        None
    }
    fn database_mut(&mut self) -> Option<&mut DatabaseConfig> {
        None
    }
    fn cache(&self) -> Option<&CacheConfig> {
        None
    }
    fn cache_mut(&mut self) -> Option<&mut CacheConfig> {
        None
    }
    fn identity(&self) -> Option<&IdentityConfig> {
        None
    }
    fn identity_mut(&mut self) -> Option<&mut IdentityConfig> {
        None
    }
    /// Checks that need more than a type: ranges, schemes, cross-field rules.
    fn validate_extra(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.http().validate()?;
        self.log().validate()?;
        if let Some(db) = self.database() {
            db.validate()?;
        }
        if let Some(cache) = self.cache() {
            cache.validate()?;
        }
        self.validate_extra()
    }
}

/// `identity.*` of a service: the gateway public key(s) that verify the
/// `x-spaceport-identity` token on every request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// One or more PEM public keys (several during a key rotation). When empty,
    /// `gateway_public_key_file` is read instead.
    pub gateway_public_keys: String,
    /// Where the gateway writes its public key on a single machine (`make run`).
    pub gateway_public_key_file: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            gateway_public_keys: String::new(),
            gateway_public_key_file: "./data/gateway-identity.pub.pem".into(),
        }
    }
}

/// The configuration of a service with a database and a cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub identity: IdentityConfig,
    pub log: LogConfig,
}

impl ServiceConfig {
    /// Embedded defaults: SQLite under `./data/`, the in-process cache.
    pub fn defaults(port: u16, name: &str) -> Self {
        ServiceConfig {
            http: HttpConfig::on_port(port),
            database: DatabaseConfig::sqlite(&format!("./data/{name}.db")),
            cache: CacheConfig::memory(&format!("{name}:")),
            identity: IdentityConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `Settings` for a service's configuration struct with the usual sections
/// (`http`, `log`, `database`, `cache`, `identity` fields), and optionally an
/// inherent method for its own checks:
/// `service_settings!(MyConfig, validate = MyConfig::check_sections);`
#[macro_export]
macro_rules! service_settings {
    ($ty:ty) => {
        $crate::service_settings!(@impl $ty, |_config: &$ty| Ok(()));
    };
    ($ty:ty, validate = $check:path) => {
        $crate::service_settings!(@impl $ty, $check);
    };
    (@impl $ty:ty, $check:expr) => {
        impl $crate::config::Settings for $ty {
            fn http(&self) -> &$crate::config::HttpConfig {
                &self.http
            }
            fn http_mut(&mut self) -> &mut $crate::config::HttpConfig {
                &mut self.http
            }
            fn log(&self) -> &$crate::config::LogConfig {
                &self.log
            }
            fn database(&self) -> Option<&$crate::config::DatabaseConfig> {
                Some(&self.database)
            }
            fn database_mut(&mut self) -> Option<&mut $crate::config::DatabaseConfig> {
                Some(&mut self.database)
            }
            fn cache(&self) -> Option<&$crate::config::CacheConfig> {
                Some(&self.cache)
            }
            fn cache_mut(&mut self) -> Option<&mut $crate::config::CacheConfig> {
                Some(&mut self.cache)
            }
            fn identity(&self) -> Option<&$crate::config::IdentityConfig> {
                Some(&self.identity)
            }
            fn identity_mut(&mut self) -> Option<&mut $crate::config::IdentityConfig> {
                Some(&mut self.identity)
            }
            fn validate_extra(&self) -> Result<(), $crate::config::ConfigError> {
                ($check)(self)
            }
        }
    };
}

crate::service_settings!(ServiceConfig);

/// A configuration failure that names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("invalid configuration: {0}")]
    Load(String),
}

impl ConfigError {
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Loads a part's configuration: `defaults`, then `file` (TOML) if given, then the
/// environment variables `{prefix}__SECTION__KEY`.
pub fn load<T: Settings>(
    prefix: &str,
    file: Option<&Path>,
    defaults: &T,
) -> Result<T, ConfigError> {
    load_from(prefix, file, std::env::vars(), defaults)
}

/// As [`load`], with the environment given explicitly (tests, the devstack).
pub fn load_from<T: Settings>(
    prefix: &str,
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    defaults: &T,
) -> Result<T, ConfigError> {
    let defaults = config::Config::try_from(defaults)
        .map_err(|e| ConfigError::Load(format!("built-in defaults: {e}")))?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::Load(format!(
                "config file {} not found",
                path.display()
            )));
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let env_prefix = format!("{prefix}__");
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(&env_prefix))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix(prefix)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env)),
    );
    let settings: T = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Load(describe(prefix, e)))?;
    settings.validate()?;
    Ok(settings)
}

/// The config crate names the key already; add the environment variable that sets
/// it, which is what an operator has to fix.
fn describe(prefix: &str, err: config::ConfigError) -> String {
    let message = err.to_string();
    let key = message
        .split("key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    match key {
        Some(key) => format!(
            "{message} (set by {prefix}__{})",
            key.replace('.', "__").to_uppercase()
        ),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sample = ServiceConfig;

    fn defaults() -> Sample {
        ServiceConfig::defaults(9000, "sample")
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        load_from::<Sample>("SAMPLE", None, env(pairs), &defaults())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_then_environment() {
        let s: Sample = load_from(
            "SAMPLE",
            None,
            env(&[
                ("SAMPLE__DATABASE__POOL_SIZE", "3"),
                ("SAMPLE__HTTP__ADDR", "127.0.0.1:7000"),
                ("OTHER__HTTP__ADDR", "nonsense"),
            ]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(s.database.pool_size, 3);
        // A nested override keeps the part's own default for sibling keys.
        assert_eq!(s.database.url.expose(), "sqlite://./data/sample.db");
        assert_eq!(s.http.addr.port(), 7000);
    }

    #[test]
    fn file_layer_sits_between_defaults_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sample.toml");
        std::fs::write(&path, "[http]\naddr = \"127.0.0.1:7100\"\nworkers = 2\n").unwrap();
        let s: Sample = load_from(
            "SAMPLE",
            Some(&path),
            env(&[("SAMPLE__HTTP__WORKERS", "4")]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(s.http.addr.port(), 7100);
        assert_eq!(s.http.workers, 4);
    }

    #[test]
    fn errors_name_the_key() {
        let e = error_of(&[("SAMPLE__HTTP__ADDR", "not-an-address")]);
        assert!(e.contains("http.addr"), "{e}");
        let e = error_of(&[("SAMPLE__DATABASE__POOL_SIZE", "lots")]);
        assert!(e.contains("database.pool_size"), "{e}");
        let e = error_of(&[("SAMPLE__LOG__FORMAT", "xml")]);
        assert!(e.contains("log.format"), "{e}");
        let e = error_of(&[("SAMPLE__DATABASE__URL", "mysql://x")]);
        assert!(e.contains("database.url"), "{e}");
        let e = error_of(&[("SAMPLE__CACHE__URL", "memcached://x")]);
        assert!(e.contains("cache.url"), "{e}");
        let e = error_of(&[("SAMPLE__DATABASE__POOLSIZE", "3")]);
        assert!(e.contains("poolsize"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut s = defaults();
        s.database.url = Secret::new("postgres://app:hunter2@db/app");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
