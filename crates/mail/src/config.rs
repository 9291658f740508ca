//! `mail.*`: where mail goes (`mail.url`) and who sends it (`mail.from`).

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use serde::{Deserialize, Serialize};
use service_kit::config::{ConfigError, Secret};
use std::path::PathBuf;

const URL_KEY: &str = "mail.url";
const FROM_KEY: &str = "mail.from";
const EXPECTED: &str =
    "expected smtp://host:port, smtps://user:pass@host:port, file://DIRECTORY or log";

/// `mail.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// `smtp://[user:pass@]host[:port]` (plain, no STARTTLS), `smtps://user:pass@host[:port]`
    /// (implicit TLS), `file://DIRECTORY` (one `.eml` per message) or `log`.
    /// A secret because it may carry the relay's password.
    pub url: Secret,
    /// The `From:` mailbox, e.g. `Spaceport <no-reply@spaceport.local>`.
    pub from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            url: Secret::new("file://./data/outbox"),
            from: "Spaceport <no-reply@spaceport.local>".into(),
        }
    }
}

impl MailConfig {
    /// Checks both keys without touching the network or the file system.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.endpoint()?;
        self.sender()?;
        Ok(())
    }

    pub(crate) fn sender(&self) -> Result<Mailbox, ConfigError> {
        self.from.trim().parse().map_err(|e| {
            ConfigError::invalid(
                FROM_KEY,
                format!("not a valid mailbox {:?}: {e}", self.from),
            )
        })
    }

    /// Parsing errors describe the problem but never repeat the URL: it may hold a password.
    pub(crate) fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        parse_endpoint(self.url.expose().trim())
            .map_err(|message| ConfigError::invalid(URL_KEY, message))
    }
}

/// A parsed `mail.url`.
pub(crate) enum Endpoint {
    Smtp(SmtpEndpoint),
    File(PathBuf),
    Log,
}

pub(crate) struct SmtpEndpoint {
    /// Implicit TLS (`smtps://`).
    pub tls: bool,
    /// What to connect to: a domain or an IP address without brackets.
    pub host: String,
    /// The host as written in a URL (IPv6 in brackets), for `describe()`.
    pub display_host: String,
    pub port: u16,
    pub credentials: Option<Credentials>,
}

fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    if url == "log" {
        return Ok(Endpoint::Log);
    }
    if let Some(dir) = url.strip_prefix("file://") {
        if dir.is_empty() {
            return Err(format!("file:// needs a directory ({EXPECTED})"));
        }
        return Ok(Endpoint::File(PathBuf::from(dir)));
    }
    // `url::ParseError` describes the problem without quoting the input.
    let parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e} ({EXPECTED})"))?;
    let (tls, default_port) = match parsed.scheme() {
        "smtp" => (false, 25),
        "smtps" => (true, 465),
        other => return Err(format!("unsupported scheme `{other}` ({EXPECTED})")),
    };
    let (host, display_host) = match parsed.host() {
        Some(url::Host::Domain(domain)) if !domain.is_empty() => {
            (domain.to_owned(), domain.to_owned())
        }
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), ip.to_string()),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), format!("[{ip}]")),
        _ => return Err(format!("missing host ({EXPECTED})")),
    };
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() || parsed.fragment().is_some()
    {
        return Err(format!(
            "a path, query or fragment is not supported; STARTTLS is never used, use smtps:// for TLS ({EXPECTED})"
        ));
    }
    let credentials = match (parsed.username(), parsed.password()) {
        ("", None) => None,
        ("", Some(_)) => return Err("a password needs a user name".into()),
        (_, None) => return Err("a user name needs a password (user:pass@host)".into()),
        (user, Some(password)) => Some(Credentials::new(
            percent_decode(user, "user name")?,
            percent_decode(password, "password")?,
        )),
    };
    Ok(Endpoint::Smtp(SmtpEndpoint {
        tls,
        host,
        display_host,
        port: parsed.port().unwrap_or(default_port),
        credentials,
    }))
}

/// User names and passwords with reserved characters are percent-encoded in the URL.
fn percent_decode(value: &str, what: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| format!("the {what} is not valid UTF-8 once percent-decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(url: &str) -> SmtpEndpoint {
        match parse_endpoint(url) {
            Ok(Endpoint::Smtp(endpoint)) => endpoint,
            _ => panic!("{url} should be an SMTP endpoint"),
        }
    }

    #[test]
    fn smtp_urls() {
        let plain = smtp("smtp://relay.internal");
        assert!(!plain.tls);
        assert_eq!((plain.host.as_str(), plain.port), ("relay.internal", 25));
        assert!(plain.credentials.is_none());

        let tls = smtp("smtps://us%40er:p%3Ass@mail.example.com");
        assert!(tls.tls);
        assert_eq!(tls.port, 465);
        assert_eq!(
            tls.credentials,
            Some(Credentials::new("us@er".into(), "p:ss".into()))
        );

        let v6 = smtp("smtp://[::1]:2525/");
        assert_eq!(
            (v6.host.as_str(), v6.display_host.as_str()),
            ("::1", "[::1]")
        );
        assert_eq!(v6.port, 2525);
    }

    #[test]
    fn other_transports() {
        assert!(matches!(parse_endpoint("log"), Ok(Endpoint::Log)));
        match parse_endpoint("file://./data/outbox") {
            Ok(Endpoint::File(dir)) => assert_eq!(dir, PathBuf::from("./data/outbox")),
            _ => panic!("relative file URL"),
        }
        match parse_endpoint("file:///var/mail/out") {
            Ok(Endpoint::File(dir)) => assert_eq!(dir, PathBuf::from("/var/mail/out")),
            _ => panic!("absolute file URL"),
        }
    }

    #[test]
    fn refused_urls_do_not_echo_the_password() {
        for url in [
            "",
            "file://",
            "http://user:hunter2@host",
            "smtp://user:hunter2@host?tls=opportunistic",
            "smtp://user:hunter2@host/helo",
            "smtp://user@host",
            "smtp://:hunter2@host",
            "smtp://user:hunter2@:25",
            "smtp://user:hunter2@host:99999",
            "not a url hunter2",
        ] {
            let error = parse_endpoint(url)
                .err()
                .unwrap_or_else(|| panic!("{url} accepted"));
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
    }

    #[test]
    fn validate_names_the_key() {
        let mut config = MailConfig::default();
        config.validate().unwrap();
        config.from = "not an address".into();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("mail.from")
        );
        config = MailConfig {
            url: Secret::new("imap://user:hunter2@host"),
            ..MailConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("mail.url") && !error.contains("hunter2"),
            "{error}"
        );
    }
}
