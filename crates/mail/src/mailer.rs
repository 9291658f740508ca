//! Building a message and handing it to the configured transport.

use crate::MailError;
use crate::config::{Endpoint, MailConfig, SmtpEndpoint};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long one delivery may take, connection included, before it fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One mail to one recipient.
#[derive(Clone)]
pub struct Message {
    /// `user@example.com` or `Name <user@example.com>`.
    pub to: String,
    pub subject: String,
    pub text: String,
    /// When given, sent as `multipart/alternative` next to `text`.
    pub html: Option<String>,
}

/// The body usually holds a one-time code or a sign-in link: keep it out of `Debug`.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Sends mail through the transport chosen by `mail.url`. Cloning is cheap.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
    timeout: Duration,
}

struct Inner {
    from: Mailbox,
    transport: Transport,
    description: String,
}

enum Transport {
    /// Kept as a builder: see [`Mailer::send`] for why no transport lives across sends.
    Smtp(AsyncSmtpTransportBuilder),
    File(PathBuf),
    Log,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("transport", &self.inner.description)
            .field("from", &self.inner.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// Needs no async runtime. A `file://` directory is created here, so that a
    /// directory that cannot be written fails at startup.
    pub fn from_config(config: &MailConfig) -> Result<Mailer, MailError> {
        let from = config.sender()?;
        let (transport, description) = match config.endpoint()? {
            Endpoint::Smtp(endpoint) => smtp_transport(endpoint)?,
            Endpoint::File(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    MailError::InvalidConfig(format!(
                        "invalid configuration `mail.url`: cannot create directory {}: {e}",
                        dir.display()
                    ))
                })?;
                let description = format!("file://{}", dir.display());
                (Transport::File(dir), description)
            }
            Endpoint::Log => (Transport::Log, "log".to_owned()),
        };
        Ok(Mailer {
            inner: Arc::new(Inner {
                from,
                transport,
                description,
            }),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replaces [`DEFAULT_TIMEOUT`] (tests of unresponsive servers want less).
    pub fn with_timeout(mut self, timeout: Duration) -> Mailer {
        self.timeout = timeout;
        self
    }

    /// Where mail goes, without credentials: for the startup log.
    pub fn describe(&self) -> String {
        self.inner.description.clone()
    }

    /// Delivers one message. A recipient lettre cannot parse is
    /// [`MailError::InvalidAddress`], whatever the transport.
    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        let email = self.build(&message)?;
        match &self.inner.transport {
            Transport::Smtp(builder) => {
                // A transport is built per message rather than kept in the Mailer: with
                // lettre's `pool` feature, building and dropping one spawns tokio tasks,
                // which would tie `from_config` and the last drop of a Mailer to a running
                // runtime, and pooled connections to the runtime (actix worker, test) that
                // opened them. One-time codes are rare enough for one connection each.
                let transport: AsyncSmtpTransport<Tokio1Executor> =
                    builder.clone().timeout(Some(self.timeout)).build();
                // lettre's timeout bounds each read or write; this bounds the whole exchange.
                tokio::time::timeout(self.timeout, transport.send(email))
                    .await
                    .map_err(|_| {
                        MailError::Delivery(format!(
                            "{} did not complete within {:?}",
                            self.inner.description, self.timeout
                        ))
                    })?
                    .map_err(|e| MailError::Delivery(format!("{}: {e}", self.inner.description)))?;
            }
            Transport::File(dir) => {
                let id = AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(email)
                    .await
                    .map_err(|e| {
                        MailError::Delivery(format!("writing to {}: {e}", dir.display()))
                    })?;
                tracing::info!(
                    to = %message.to,
                    subject = %message.subject,
                    file = %format!("{id}.eml"),
                    "mail written"
                );
            }
            Transport::Log => {
                tracing::info!(
                    to = %message.to,
                    subject = %message.subject,
                    "mail (log transport)"
                );
                tracing::debug!(text = %message.text, html = ?message.html, "mail body");
            }
        }
        Ok(())
    }

    fn build(&self, message: &Message) -> Result<lettre::Message, MailError> {
        let to: Mailbox = message.to.trim().parse().map_err(|e| {
            MailError::InvalidAddress(format!("invalid recipient {:?}: {e}", message.to))
        })?;
        let builder = lettre::Message::builder()
            .from(self.inner.from.clone())
            .to(to)
            .message_id(Some(format!(
                "<{}@{}>",
                ulid::Ulid::new(),
                self.inner.from.email.domain()
            )))
            .subject(single_line(&message.subject));
        let built = match &message.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(message.text.clone()),
            ),
        };
        built.map_err(|e| MailError::InvalidAddress(e.to_string()))
    }
}

/// lettre already encodes a subject with line breaks so it cannot add headers; a
/// line break in a subject is never wanted either, so it becomes a space.
fn single_line(subject: &str) -> String {
    subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn smtp_transport(endpoint: SmtpEndpoint) -> Result<(Transport, String), MailError> {
    let SmtpEndpoint {
        tls,
        host,
        display_host,
        port,
        credentials,
    } = endpoint;
    let mut builder = if tls {
        // Implicit TLS (wrapper mode), rustls with the webpki roots.
        AsyncSmtpTransport::<Tokio1Executor>::relay(&host).map_err(|e| {
            MailError::InvalidConfig(format!("invalid configuration `mail.url`: TLS setup: {e}"))
        })?
    } else {
        // Plain SMTP on purpose: a sink or relay inside the cluster, no STARTTLS.
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
    }
    .port(port);
    let scheme = if tls { "smtps" } else { "smtp" };
    let mut description = format!("{scheme}://{display_host}:{port}");
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
        description.push_str(" (authenticated)");
    }
    Ok((Transport::Smtp(builder), description))
}
