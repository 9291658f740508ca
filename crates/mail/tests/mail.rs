//! `cargo test -p mail --all-features`; without `test-sink` only the tests that
//! need no SMTP server run.

use mail::{MailConfig, MailError, Mailer, Message};
use service_kit::config::Secret;
use std::time::Duration;

const FROM: &str = "Spaceport <no-reply@spaceport.local>";

fn mailer(url: &str) -> Result<Mailer, MailError> {
    Mailer::from_config(&MailConfig {
        url: Secret::new(url),
        from: FROM.into(),
    })
}

fn message(to: &str, subject: &str, text: &str) -> Message {
    Message {
        to: to.into(),
        subject: subject.into(),
        text: text.into(),
        html: None,
    }
}

#[tokio::test]
async fn file_transport_writes_one_eml_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("nested/outbox");
    let mailer = mailer(&format!("file://{}", outbox.display())).unwrap();
    assert_eq!(mailer.describe(), format!("file://{}", outbox.display()));

    for n in 1..=2 {
        let subject = format!("Your sign-in code #{n}");
        mailer
            .send(message("ada@example.com", &subject, "Code: 123456"))
            .await
            .unwrap();
    }

    let contents: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .inspect(|path| assert_eq!(path.extension().unwrap(), "eml", "{path:?}"))
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    assert_eq!(contents.len(), 2, "one file per message");
    // File names and header order carry random parts: look each message up.
    for n in 1..=2 {
        let subject = format!("Subject: Your sign-in code #{n}");
        let file = contents
            .iter()
            .find(|c| c.contains(&subject))
            .unwrap_or_else(|| panic!("no file with {subject:?}"));
        assert!(file.contains("To: ada@example.com"));
    }
}

#[tokio::test]
async fn log_transport_succeeds() {
    let mailer = mailer("log").unwrap();
    assert_eq!(mailer.describe(), "log");
    mailer
        .send(message("ada@example.com", "Code", "Code: 123456"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_invalid_recipient_is_an_invalid_address() {
    let mailer = mailer("log").unwrap();
    for to in [
        "",
        "not an address",
        "ada@",
        "ada@example.com\r\nBcc: eve@example.com",
        "ada@example.com, eve@example.com",
    ] {
        match mailer.send(message(to, "Code", "123456")).await {
            Err(MailError::InvalidAddress(_)) => {}
            other => panic!("{to:?}: {other:?}"),
        }
    }
}

#[test]
fn invalid_urls_are_invalid_config_naming_mail_url() {
    for url in [
        "",
        "imap://user:hunter2@host",
        "smtp://user:hunter2@host?tls=opportunistic",
        "smtp://user@host",
        "smtp://user:hunter2@",
        "file://",
        "logs",
    ] {
        match mailer(url) {
            Err(error @ MailError::InvalidConfig(_)) => {
                let text = format!("{error} {error:?}");
                assert!(text.contains("mail.url"), "{url}: {text}");
                assert!(!text.contains("hunter2"), "{url}: {text}");
            }
            other => panic!("{url}: {:?}", other.map(|m| m.describe())),
        }
    }
    let bad_from = Mailer::from_config(&MailConfig {
        url: Secret::new("log"),
        from: "Spaceport".into(),
    });
    assert!(matches!(bad_from, Err(MailError::InvalidConfig(e)) if e.contains("mail.from")));
}

/// Building an SMTP mailer needs no runtime, and credentials never show.
#[test]
fn credentials_never_show() {
    let config = MailConfig {
        url: Secret::new("smtps://mailer:hunter2@mail.example.com"),
        from: FROM.into(),
    };
    config.validate().unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
    let tls = Mailer::from_config(&config).unwrap();
    assert_eq!(
        tls.describe(),
        "smtps://mail.example.com:465 (authenticated)"
    );
    assert!(!format!("{tls:?}").contains("hunter2"));
    assert!(!format!("{tls:?}").contains("mailer:"));

    let plain = mailer("smtp://relay.internal:2525").unwrap();
    assert_eq!(plain.describe(), "smtp://relay.internal:2525");
}

#[test]
fn defaults_are_valid() {
    let config = MailConfig::default();
    config.validate().unwrap();
    assert_eq!(config.url.expose(), "file://./data/outbox");
    assert_eq!(config.from, FROM);
}

#[tokio::test]
async fn a_closed_port_fails_fast_with_delivery() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mailer = mailer(&format!("smtp://user:hunter2@127.0.0.1:{port}")).unwrap();
    let started = std::time::Instant::now();
    let result = mailer
        .send(message("ada@example.com", "Code", "123456"))
        .await;
    match result {
        Err(error @ MailError::Delivery(_)) => {
            assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < mail::DEFAULT_TIMEOUT);
}

/// A server that accepts but never answers must not hang the caller.
#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let mailer = mailer(&format!("smtp://127.0.0.1:{port}"))
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let result = mailer
        .send(message("ada@example.com", "Code", "123456"))
        .await;
    assert!(matches!(result, Err(MailError::Delivery(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[cfg(feature = "test-sink")]
mod smtp {
    use super::*;
    use mail::sink::SmtpSink;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_code_survives_the_round_trip() {
        let sink = SmtpSink::start().await;
        let mailer = mailer(&sink.url()).unwrap();
        assert_eq!(mailer.describe(), sink.url());

        let long_line = "0123456789 ".repeat(120);
        let text = format!(
            "Bonjour Zoë, here is your code: 482913\n\
             Grüße aus Köln, café crème.\n\
             .a line starting with a dot\n\
             .\n\
             {long_line}\n\
             The end."
        );
        mailer
            .send(message(
                "Ada <ada@example.com>",
                "Votre code de connexion: é ü",
                &text,
            ))
            .await
            .unwrap();

        let mail = sink
            .wait_for("ada@example.com", WAIT)
            .await
            .expect("delivered");
        assert_eq!(mail.from, "no-reply@spaceport.local");
        assert_eq!(mail.to, vec!["ada@example.com".to_owned()]);
        assert_eq!(
            mail.subject().as_deref(),
            Some("Votre code de connexion: é ü")
        );
        let body = mail.body_text();
        assert!(body.contains("482913"), "{body}");
        assert_eq!(body.trim_end(), text, "raw message:\n{}", mail.data);
        assert!(mail.data.contains("Message-ID: <"), "{}", mail.data);
        assert_eq!(sink.messages().len(), 1);
    }

    /// Short ASCII text goes out as 7bit, so the dot-stuffing is SMTP's alone.
    #[tokio::test]
    async fn dot_stuffing_of_a_seven_bit_body() {
        let sink = SmtpSink::start().await;
        let mailer = mailer(&sink.url()).unwrap();
        let text = "Code: 654321\n.\n..two dots\n.one dot";
        mailer
            .send(message("bob@example.com", "Code", text))
            .await
            .unwrap();
        let mail = sink.wait_for("bob@example.com", WAIT).await.unwrap();
        assert!(
            mail.data.contains("\r\n.\r\n..two dots\r\n.one dot"),
            "{}",
            mail.data
        );
        assert_eq!(mail.body_text().trim_end(), text);
    }

    /// Mostly non-ASCII text makes lettre pick base64 over quoted-printable.
    #[tokio::test]
    async fn a_base64_body_is_decoded() {
        let sink = SmtpSink::start().await;
        let mailer = mailer(&sink.url()).unwrap();
        let text = "Ваш код для входа: 731046\nログインコード: 731046";
        mailer
            .send(message("yuki@example.com", "コード", text))
            .await
            .unwrap();
        let mail = sink.wait_for("yuki@example.com", WAIT).await.unwrap();
        assert!(
            mail.data.contains("Content-Transfer-Encoding: base64"),
            "{}",
            mail.data
        );
        assert_eq!(mail.body_text().trim_end(), text);
        assert_eq!(mail.subject().as_deref(), Some("コード"));
    }

    /// smtps:// really wraps the connection in TLS (a plain server cannot answer
    /// the handshake), and the failure is a prompt Delivery error, not a panic.
    #[tokio::test]
    async fn smtps_speaks_tls_from_the_first_byte() {
        let sink = SmtpSink::start().await;
        let url = format!("smtps://user:hunter2@localhost:{}", sink.addr().port());
        let mailer = mailer(&url).unwrap();
        let started = std::time::Instant::now();
        let result = mailer
            .send(message("ada@example.com", "Code", "123456"))
            .await;
        match result {
            Err(error @ MailError::Delivery(_)) => {
                assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < mail::DEFAULT_TIMEOUT);
        assert!(sink.messages().is_empty());
    }

    #[tokio::test]
    async fn html_alternative_carries_both_parts() {
        let sink = SmtpSink::start().await;
        let mailer = mailer(&sink.url()).unwrap();
        let mut message = message(
            "ada@example.com",
            "Sign in",
            "Open https://spaceport.local/l/abc",
        );
        message.html = Some("<p><a href=\"https://spaceport.local/l/abc\">Sign in</a></p>".into());
        mailer.send(message).await.unwrap();

        let mail = sink.wait_for("ada@example.com", WAIT).await.unwrap();
        assert!(mail.data.contains("multipart/alternative"), "{}", mail.data);
        assert!(mail.data.contains("text/plain"), "{}", mail.data);
        assert!(mail.data.contains("text/html"), "{}", mail.data);
        assert!(mail.data.contains("Sign in</a>"), "{}", mail.data);
        assert_eq!(
            mail.body_text().trim_end(),
            "Open https://spaceport.local/l/abc"
        );
    }

    #[tokio::test]
    async fn a_line_break_in_the_subject_cannot_add_a_header() {
        let sink = SmtpSink::start().await;
        let mailer = mailer(&sink.url()).unwrap();
        mailer
            .send(message(
                "ada@example.com",
                "Code\r\nBcc: eve@example.com\r\n\r\nforged body",
                "123456",
            ))
            .await
            .unwrap();
        let mail = sink.wait_for("ada@example.com", WAIT).await.unwrap();
        assert_eq!(mail.to, vec!["ada@example.com".to_owned()]);
        let (headers, _) = mail.data.split_once("\r\n\r\n").unwrap();
        assert!(
            !headers.to_ascii_lowercase().contains("\r\nbcc:"),
            "{headers}"
        );
        assert!(!mail.data.contains("\r\n\r\nforged body"), "{}", mail.data);
        let subject = mail.subject().unwrap();
        assert!(!subject.contains(['\r', '\n']), "{subject:?}");
        assert!(mail.body_text().contains("123456"));
    }

    #[tokio::test]
    async fn concurrent_sends_each_arrive() {
        let sink = SmtpSink::start().await;
        let mailer = mailer(&sink.url()).unwrap();
        let sends = (0..8).map(|n| {
            let mailer = mailer.clone();
            async move {
                let to = format!("user{n}@example.com");
                mailer
                    .send(message(&to, "Code", &format!("Code: 10000{n}")))
                    .await
            }
        });
        for result in futures_join_all(sends).await {
            result.unwrap();
        }
        for n in 0..8 {
            let mail = sink
                .wait_for(&format!("user{n}@example.com"), WAIT)
                .await
                .unwrap();
            assert!(mail.body_text().contains(&format!("10000{n}")));
        }
        assert_eq!(sink.messages().len(), 8);
    }

    async fn futures_join_all<F: std::future::Future + Send + 'static>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<F::Output>
    where
        F::Output: Send,
    {
        let handles: Vec<_> = futures.map(tokio::spawn).collect();
        let mut outputs = Vec::new();
        for handle in handles {
            outputs.push(handle.await.unwrap());
        }
        outputs
    }

    #[tokio::test]
    async fn wait_for_gives_up_after_the_timeout() {
        let sink = SmtpSink::start().await;
        let started = std::time::Instant::now();
        assert!(
            sink.wait_for("nobody@example.com", Duration::from_millis(200))
                .await
                .is_none()
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    /// The sink speaks SMTP to clients other than lettre: raw protocol checks.
    #[tokio::test]
    async fn the_sink_follows_the_protocol() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

        let sink = SmtpSink::start().await;
        let stream = tokio::net::TcpStream::connect(sink.addr()).await.unwrap();
        let mut stream = BufReader::new(stream);
        async fn reply(stream: &mut BufReader<tokio::net::TcpStream>) -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                all.push_str(&line);
                // The last line of a multi-line reply has a space after the code.
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    return all;
                }
            }
        }
        async fn send(stream: &mut BufReader<tokio::net::TcpStream>, line: &str) -> String {
            stream.get_mut().write_all(line.as_bytes()).await.unwrap();
            reply(stream).await
        }

        assert!(reply(&mut stream).await.starts_with("220 "));
        assert!(
            send(&mut stream, "MAIL FROM:<a@b.c>\r\n")
                .await
                .starts_with("503 ")
        );
        assert!(
            send(&mut stream, "EHLO client.test\r\n")
                .await
                .contains("250 SIZE")
        );
        assert!(send(&mut stream, "VRFY root\r\n").await.starts_with("502 "));
        assert!(send(&mut stream, "DATA\r\n").await.starts_with("503 "));
        assert!(
            send(&mut stream, "MAIL FROM:<a@b.c>\r\n")
                .await
                .starts_with("250 ")
        );
        assert!(send(&mut stream, "RSET\r\n").await.starts_with("250 "));
        assert!(
            send(&mut stream, "RCPT TO:<x@y.z>\r\n")
                .await
                .starts_with("503 ")
        );
        assert!(
            send(&mut stream, "MAIL FROM:<a@b.c> BODY=8BITMIME\r\n")
                .await
                .starts_with("250 ")
        );
        assert!(
            send(&mut stream, "RCPT TO:<x@y.z>\r\n")
                .await
                .starts_with("250 ")
        );
        assert!(send(&mut stream, "NOOP\r\n").await.starts_with("250 "));
        assert!(send(&mut stream, "DATA\r\n").await.starts_with("354 "));
        let data = "Subject: raw\r\n\r\n..stuffed\r\nplain\r\n.\r\n";
        assert!(send(&mut stream, data).await.starts_with("250 "));
        let too_long = format!("NOOP {}\r\n", "x".repeat(1000));
        assert!(send(&mut stream, &too_long).await.starts_with("500 "));

        let mail = sink.wait_for("x@y.z", WAIT).await.unwrap();
        assert_eq!(mail.data, "Subject: raw\r\n\r\n.stuffed\r\nplain\r\n");
        assert_eq!(mail.subject().as_deref(), Some("raw"));

        // QUIT closes politely.
        let stream = tokio::net::TcpStream::connect(sink.addr()).await.unwrap();
        let mut stream = BufReader::new(stream);
        reply(&mut stream).await;
        assert!(send(&mut stream, "QUIT\r\n").await.starts_with("221 "));
    }

    #[tokio::test]
    async fn an_oversized_message_is_refused() {
        let sink = SmtpSink::start().await;
        let mailer = mailer(&sink.url()).unwrap();
        let huge = "x".repeat(900).repeat(1300) + "\n";
        let result = mailer.send(message("ada@example.com", "Big", &huge)).await;
        assert!(matches!(result, Err(MailError::Delivery(_))), "{result:?}");
        assert!(sink.messages().is_empty());
    }

    #[tokio::test]
    async fn a_dropped_sink_stops_accepting() {
        let sink = SmtpSink::start().await;
        let addr = sink.addr();
        drop(sink);
        // The abort lands when the runtime next polls the server task.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
