//! What the workloads need before they start: people signed in by one-time
//! code (read from the service's mail outbox) and a service principal.

use crate::api::AuthApi;
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identity::{AccessClaims, Identity, PrincipalType, ScopeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SUBJECT_PREFIX: &str = "Your Spaceport sign-in code: ";

/// A signed-in person.
pub struct Session {
    pub refresh_token: String,
    /// The claims of the access token the sign-in returned.
    pub claims: AccessClaims,
}

impl Session {
    /// The identity the gateway would send for this person: their user, the
    /// workspace the token acts in, and every scope.
    pub fn owner_identity(&self) -> Identity {
        Identity {
            principal_id: self.claims.sub.clone(),
            principal_type: PrincipalType::User,
            workspace_id: self.claims.wrk.clone(),
            scopes: ScopeSet::all(),
            space_id: None,
        }
    }
}

/// A service principal's credentials.
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

/// Signs `email` in: requests a code, reads it from the outbox, verifies it.
pub async fn sign_in(api: &AuthApi, outbox: &Path, email: &str) -> Result<Session> {
    let anonymous = Identity::anonymous();
    api.post(
        "/api/v1/auth/otp/request",
        &anonymous,
        &serde_json::json!({ "email": email }),
    )
    .await?
    .expect(200, "requesting a sign-in code")?;
    let code = take_code(outbox, email).await?;
    let answer = api
        .post(
            "/api/v1/auth/otp/verify",
            &anonymous,
            &serde_json::json!({ "email": email, "otp": code }),
        )
        .await?
        .expect(200, "verifying the sign-in code")?;
    let data = &answer["data"];
    let text = |field: &str| {
        data[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("sign-in answer without data.{field}: {answer}"))
    };
    let access_token = text("access_token")?;
    let session = Session {
        refresh_token: text("refresh_token")?,
        claims: claims_of(&access_token)?,
    };
    if data["user"]["id"].as_str() != Some(session.claims.sub.as_str()) {
        bail!("the access token is not for the user who signed in: {answer}");
    }
    Ok(session)
}

/// Creates a service principal in `owner`'s workspace.
pub async fn create_service_principal(
    api: &AuthApi,
    owner: &Session,
    name: &str,
) -> Result<ClientCredentials> {
    let answer = api
        .post(
            "/v1/auth/service-principals",
            &owner.owner_identity(),
            &serde_json::json!({ "name": name, "scopes": "bookings:read" }),
        )
        .await?
        .expect(201, "creating a service principal")?;
    let text = |field: &str| {
        answer["data"][field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("service principal answer without data.{field}: {answer}"))
    };
    Ok(ClientCredentials {
        client_id: text("client_id")?,
        client_secret: text("client_secret")?,
    })
}

/// The payload of a JWT, unverified: the bench trusts the service it started.
fn claims_of(jwt: &str) -> Result<AccessClaims> {
    let payload = jwt
        .split('.')
        .nth(1)
        .context("the access token is not a JWT")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .context("the access token payload is not base64url")?;
    serde_json::from_slice(&bytes).context("the access token payload is not access claims")
}

/// Reads the code from the newest mail to `email` and deletes the mail, so the
/// outbox stays small. The file is written before the request is answered,
/// but it is polled briefly all the same.
async fn take_code(outbox: &Path, email: &str) -> Result<String> {
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
