//! What the workloads need before they start: people signed in by one-time
//! code (read from the service's mail outbox) and a service principal.

use crate::api::AuthApi;
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identity::{AccessClaims, Identity, PrincipalType, ScopeSet};
use launcher::outbox::take_code;
use std::path::Path;

/// A signed-in person.
pub struct Session {
    pub access_token: String,
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
            organization_id: None,
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
        access_token,
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
