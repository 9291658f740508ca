//! Outgoing mail: one-time codes and sign-in links.
//!
//! `mail.url` chooses the transport: plain `smtp://` (a relay or sink inside the
//! cluster), `smtps://` (implicit TLS), `file://DIR` (one `.eml` per message, the
//! default for `make run`) or `log`. With the `test-sink` feature, [`sink::SmtpSink`]
//! is a small SMTP server that integration tests deliver to.

mod config;
mod mailer;
#[cfg(feature = "test-sink")]
pub mod sink;

pub use config::MailConfig;
pub use mailer::{DEFAULT_TIMEOUT, Mailer, Message};

use service_kit::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `mail.url` or `mail.from` is unusable; the message names the key.
    #[error("{0}")]
    InvalidConfig(String),
    /// A recipient that is not a mail address (a 422 for the caller).
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// The transport failed or timed out.
    #[error("mail delivery failed: {0}")]
    Delivery(String),
}

impl From<ConfigError> for MailError {
    fn from(error: ConfigError) -> Self {
        MailError::InvalidConfig(error.to_string())
    }
}
