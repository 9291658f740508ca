//! An SMTP server for integration tests that must deliver over real SMTP
//! (feature `test-sink`).
//!
//! It speaks just enough of RFC 5321 for lettre and other well-behaved clients:
//! HELO/EHLO, MAIL FROM, RCPT TO, DATA (with dot-unstuffing), RSET, NOOP and QUIT;
//! anything else gets a 502. Lines are limited to 1000 octets, messages to 1 MiB,
//! sessions to [`MAX_CONNECTIONS`] at a time and [`IDLE_TIMEOUT`] of silence.

mod mime;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// Longest line, CRLF included (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 1000;
/// Largest message accepted by DATA.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// Sessions served at once; more are turned away with a 421.
pub const MAX_CONNECTIONS: usize = 64;
/// Recipients per message.
pub const MAX_RECIPIENTS: usize = 100;
/// A session silent for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One message as received: the envelope and the raw RFC 5322 text, dot-unstuffed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The reverse path of `MAIL FROM` (empty for the null sender `<>`).
    pub from: String,
    /// The forward paths of every accepted `RCPT TO`.
    pub to: Vec<String>,
    /// Headers and body, CRLF line endings, without the terminating `.` line.
    pub data: String,
}

impl ReceivedMail {
    /// The `Subject:` header, unfolded and with RFC 2047 encoded words decoded.
    pub fn subject(&self) -> Option<String> {
        mime::subject(&self.data)
    }

    /// The first `text/plain` part (the whole body when the message is not
    /// multipart), with its quoted-printable or base64 transfer encoding undone and
    /// line endings turned into `\n`. Empty when there is no text part.
    pub fn body_text(&self) -> String {
        mime::body_text(&self.data)
    }

    fn is_for(&self, recipient: &str) -> bool {
        self.to.iter().any(|to| to.eq_ignore_ascii_case(recipient))
    }
}

/// A running sink on `127.0.0.1`; it stops accepting, and drops open sessions,
/// when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<ReceivedMail>>,
    arrived: Notify,
}

impl Shared {
    fn store(&self, mail: ReceivedMail) {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(mail);
        self.arrived.notify_waiters();
    }

    fn find(&self, recipient: &str) -> Option<ReceivedMail> {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|mail| mail.is_for(recipient))
            .cloned()
    }
}

impl SmtpSink {
    /// Binds `127.0.0.1:0` and serves in the background of the current runtime.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the SMTP sink on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("local address of the SMTP sink");
        let shared = Arc::new(Shared::default());
        let server = tokio::spawn(serve(listener, Arc::clone(&shared)));
        SmtpSink {
            addr,
            shared,
            server,
        }
    }

    /// `smtp://127.0.0.1:PORT`, ready for `mail.url`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message received so far, in order of arrival.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared
            .messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first message for `recipient` (the envelope address, compared without
    /// regard to ASCII case), waiting up to `timeout` for it to arrive.
    pub async fn wait_for(&self, recipient: &str, timeout: Duration) -> Option<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register for the next arrival before looking, so none slips in between.
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(mail) = self.shared.find(recipient) {
                return Some(mail);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.shared.find(recipient);
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Dropping the server task drops the listener and the JoinSet of sessions.
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut stream, _)) if sessions.len() >= MAX_CONNECTIONS => {
                    let refusal = stream.write_all(b"421 4.3.2 too many connections\r\n");
                    let _ = tokio::time::timeout(Duration::from_secs(1), refusal).await;
                }
                Ok((stream, _)) => {
                    sessions.spawn(Session::new(stream, Arc::clone(&shared)).run());
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

enum Line {
    Text(String),
    TooLong,
    Closed,
}

struct Session {
    stream: BufReader<TcpStream>,
    shared: Arc<Shared>,
    greeted: bool,
    from: Option<String>,
    to: Vec<String>,
}

impl Session {
    fn new(stream: TcpStream, shared: Arc<Shared>) -> Session {
        Session {
            stream: BufReader::new(stream),
            shared,
            greeted: false,
            from: None,
            to: Vec::new(),
        }
    }

    /// I/O errors, timeouts and protocol violations all end the session.
    async fn run(mut self) {
        let _ = self.converse().await;
    }

    async fn converse(&mut self) -> io::Result<()> {
        self.reply("220 127.0.0.1 ESMTP spaceport test sink")
            .await?;
        loop {
            let line = match self.read_line().await? {
                Line::Text(line) => line,
                Line::TooLong => return self.reply("500 5.5.2 line too long").await,
                Line::Closed => return Ok(()),
            };
            let (verb, argument) = match line.split_once(' ') {
                Some((verb, argument)) => (verb, argument.trim()),
                None => (line.as_str(), ""),
            };
            match verb.to_ascii_uppercase().as_str() {
                "EHLO" | "HELO" if argument.is_empty() => {
                    self.reply("501 5.5.4 a domain is required").await?
                }
                "EHLO" => {
                    self.start_over(true);
                    let size = format!("250 SIZE {MAX_MESSAGE}");
                    let lines = ["250-127.0.0.1", "250-8BITMIME", "250-SMTPUTF8", &size];
                    self.reply(&lines.join("\r\n")).await?
                }
                "HELO" => {
                    self.start_over(true);
                    self.reply("250 127.0.0.1").await?
                }
                "MAIL" => self.mail_from(argument).await?,
                "RCPT" => self.rcpt_to(argument).await?,
                "DATA" => {
                    if self.to.is_empty() {
                        self.reply("503 5.5.1 RCPT TO first").await?
                    } else if !argument.is_empty() {
                        self.reply("501 5.5.4 DATA takes no argument").await?
                    } else if !self.data().await? {
                        return self.reply("500 5.5.2 line too long").await;
                    }
                }
                "RSET" => {
                    self.start_over(self.greeted);
                    self.reply("250 2.0.0 OK").await?
                }
                "NOOP" => self.reply("250 2.0.0 OK").await?,
                "QUIT" => return self.reply("221 2.0.0 bye").await,
                _ => self.reply("502 5.5.1 command not implemented").await?,
            }
        }
    }

    fn start_over(&mut self, greeted: bool) {
        self.greeted = greeted;
        self.from = None;
        self.to.clear();
    }

    async fn mail_from(&mut self, argument: &str) -> io::Result<()> {
        if !self.greeted {
            return self.reply("503 5.5.1 EHLO or HELO first").await;
        }
        if self.from.is_some() {
            return self.reply("503 5.5.1 MAIL FROM already given").await;
        }
        match path_after(argument, "FROM:") {
            Some(path) => {
                self.from = Some(path);
                self.reply("250 2.1.0 OK").await
            }
            None => self.reply("501 5.5.4 syntax: MAIL FROM:<address>").await,
        }
    }

    async fn rcpt_to(&mut self, argument: &str) -> io::Result<()> {
        if self.from.is_none() {
            return self.reply("503 5.5.1 MAIL FROM first").await;
        }
        match path_after(argument, "TO:") {
            Some(path) if path.is_empty() => self.reply("501 5.1.3 empty recipient").await,
            Some(_) if self.to.len() >= MAX_RECIPIENTS => {
                self.reply("452 4.5.3 too many recipients").await
            }
            Some(path) => {
                self.to.push(path);
                self.reply("250 2.1.5 OK").await
            }
            None => self.reply("501 5.5.4 syntax: RCPT TO:<address>").await,
        }
    }

    /// Reads the message up to the lone `.`; `false` when a line was too long.
    async fn data(&mut self) -> io::Result<bool> {
        self.reply("354 end data with <CR><LF>.<CR><LF>").await?;
        let mut data = String::new();
        let mut too_large = false;
        loop {
            let line = match self.read_line().await? {
                Line::Text(line) => line,
                Line::TooLong => return Ok(false),
                Line::Closed => return Err(io::ErrorKind::UnexpectedEof.into()),
            };
            if line == "." {
                break;
            }
            // Dot-unstuffing (RFC 5321 §4.5.2).
            let line = line.strip_prefix('.').unwrap_or(&line);
            // Keep reading to the end when too large, so the session stays in sync.
            too_large = too_large || data.len() + line.len() + 2 > MAX_MESSAGE;
            if !too_large {
                data.push_str(line);
                data.push_str("\r\n");
            }
        }
        let from = self.from.take().unwrap_or_default();
        let to = std::mem::take(&mut self.to);
        if too_large {
            return self
                .reply(&format!("552 5.3.4 message exceeds {MAX_MESSAGE} bytes"))
                .await
                .map(|()| true);
        }
        self.shared.store(ReceivedMail { from, to, data });
        self.reply("250 2.0.0 OK queued").await.map(|()| true)
    }

    /// One line without its line break (CRLF, or a bare LF from a sloppy client).
    async fn read_line(&mut self) -> io::Result<Line> {
        let mut buf = Vec::new();
        let mut limited = (&mut self.stream).take(MAX_LINE as u64);
        let n = tokio::time::timeout(IDLE_TIMEOUT, limited.read_until(b'\n', &mut buf))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if buf.last() != Some(&b'\n') {
            return Ok(if n == MAX_LINE {
                Line::TooLong
            } else {
                Line::Closed
            });
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(Line::Text(String::from_utf8_lossy(&buf).into_owned()))
    }

    async fn reply(&mut self, reply: &str) -> io::Result<()> {
        let stream = self.stream.get_mut();
        let write = async {
            stream.write_all(reply.as_bytes()).await?;
            stream.write_all(b"\r\n").await
        };
        tokio::time::timeout(IDLE_TIMEOUT, write)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }
}

/// `FROM:<a@b> BODY=8BITMIME` → `a@b`; parameters after the path are ignored.
fn path_after(argument: &str, keyword: &str) -> Option<String> {
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let path = argument[keyword.len()..].trim_start().strip_prefix('<')?;
    let (address, _parameters) = path.split_once('>')?;
    Some(address.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(path_after("FROM:<a@b.c>", "FROM:"), Some("a@b.c".into()));
        assert_eq!(
            path_after("from: <a@b.c> BODY=8BITMIME SMTPUTF8", "FROM:"),
            Some("a@b.c".into())
        );
        assert_eq!(path_after("FROM:<>", "FROM:"), Some(String::new()));
        assert_eq!(path_after("TO:a@b.c", "TO:"), None);
        assert_eq!(path_after("FROM:<a@b.c>", "TO:"), None);
        assert_eq!(path_after("TO", "TO:"), None);
    }
}
