//! Sign-in codes from auth-service's file outbox (`AUTH__MAIL__URL=file://…`,
//! one `.eml` per mail).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SUBJECT_PREFIX: &str = "Your Spaceport sign-in code: ";

/// Reads the code from the newest mail to `email` and deletes the mail, so the
/// outbox stays small. The file is written before the request is answered,
/// but it is polled briefly all the same.
pub async fn take_code(outbox: &Path, email: &str) -> Result<String> {
    for _ in 0..50 {
        if let Some((path, mail)) = newest_mail_to(outbox, email)? {
            let code =
                code_in(&mail).with_context(|| format!("no sign-in code in {}", path.display()))?;
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("no mail to {email} in {}", outbox.display())
}

fn newest_mail_to(outbox: &Path, email: &str) -> Result<Option<(PathBuf, String)>> {
    let mut newest = None;
    for entry in
        std::fs::read_dir(outbox).with_context(|| format!("reading {}", outbox.display()))?
    {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let mail = std::fs::read_to_string(&path)?;
        let headers = mail.split("\r\n\r\n").next().unwrap_or_default();
        let to_email = headers.lines().any(|line| {
            line.to_ascii_lowercase().starts_with("to:")
                && line
                    .to_ascii_lowercase()
                    .contains(&email.to_ascii_lowercase())
        });
        if !to_email {
            continue;
        }
        let modified = std::fs::metadata(&path)?.modified()?;
        if newest.as_ref().is_none_or(|(m, _, _)| modified > *m) {
            newest = Some((modified, path, mail));
        }
    }
    Ok(newest.map(|(_, path, mail)| (path, mail)))
}

/// The code from the subject, or else the first six-digit run of the body
/// once quoted-printable soft line breaks are undone.
fn code_in(mail: &str) -> Option<String> {
    let six_digits = |s: &str| {
        s.split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == 6)
            .map(str::to_owned)
    };
    mail.lines()
        .find_map(|line| line.strip_prefix("Subject: "))
        .and_then(|subject| subject.strip_prefix(SUBJECT_PREFIX))
        .and_then(six_digits)
        .or_else(|| {
            let body = mail.split_once("\r\n\r\n")?.1;
            six_digits(&body.replace("=\r\n", "").replace("=\n", ""))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_code_in_the_subject_or_the_body() {
        let mail = "From: a@b\r\nTo: x@example.com\r\nSubject: Your Spaceport sign-in code: 042917\r\n\r\nbody 111111";
        assert_eq!(code_in(mail).as_deref(), Some("042917"));
        let folded = "To: x@example.com\r\n\r\nYour code is 12=\r\n3456\r\n";
        assert_eq!(code_in(folded).as_deref(), Some("123456"));
        assert_eq!(code_in("To: x\r\n\r\nno code"), None);
    }
}
