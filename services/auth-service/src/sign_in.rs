//! Signing in by a one-time code or a magic link, which share one challenge:
//!
//! - SpaceOS: `POST /api/v1/auth/otp/request {email}`, `POST /api/v1/auth/otp/verify {email, otp}`
//! - gospace: `POST /v1/auth/login {email, redirect_uri?}` (one mail with the code
//!   and a link), `POST /v1/auth/verify {token}` or `{email, code}`
//!
//! A new challenge replaces the previous one; either proof consumes it, once.

use crate::AuthState;
use crate::accounts::{self, User, normalize_email};
use crate::openapi::{Envelope, ErrorEnvelope};
use crate::schema::otp_challenges;
use crate::sessions;
use crate::tokens::Grant;
use actix_web::{HttpRequest, web};
use cache::Quota;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::scopes::Catalog;
use identity::{PrincipalType, ScopeSet};
use serde::{Deserialize, Serialize};
use service_kit::{ApiError, ApiResponse, FieldError, Json};
use std::time::Duration;
use store::StoreError;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

const CODE_DIGITS: usize = 6;
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[schema(format = Email)]
    email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeVerification {
    #[schema(format = Email)]
    email: String,
    /// The six digits from the mail.
    #[schema(pattern = r"^\s*[0-9]{6}\s*$")]
    otp: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    #[schema(format = Email)]
    email: String,
    /// The page the link opens (`?token=…` is appended). Must be on the
    /// allow-list (`magic_links.allowed_redirect_uris`: same origin, a path
    /// below an entry's); when absent, the configured default page.
    #[schema(format = "uri")]
    redirect_uri: Option<String>,
}

/// `{token}` from the link, or `{email, code}` typed in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkVerification {
    /// The link's token (`ml_…`); send it alone.
    token: Option<String>,
    /// With `code`.
    #[schema(format = Email)]
    email: Option<String>,
    /// The six digits from the mail; with `email`.
    #[schema(pattern = r"^\s*[0-9]{6}\s*$")]
    code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Requested {
    /// Seconds until the code (and link) expire.
    expires_in: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// `usr_…`
    id: String,
    /// The same as `id`, as gospace's answers name it (`user.user_id`).
    user_id: String,
    #[schema(format = Email)]
    email: String,
    /// Empty until the person sets it.
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    /// An EdDSA JWT (`typ: at+jwt`) for the person's default workspace.
    access_token: String,
    /// `rt_…`; rotates on every use at `POST /v1/auth/token`.
    refresh_token: String,
    #[schema(schema_with = crate::openapi::bearer)]
    token_type: &'static str,
    /// Seconds the access token lives.
    expires_in: u64,
    user: UserView,
}

/// A uniformly random code of six digits.
fn new_code() -> String {
    // Rejection sampling keeps the digits uniform: 4_294_000_000 is the largest
    // multiple of 10^6 below 2^32.
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).expect("random bytes");
        let n = u32::from_le_bytes(bytes);
        if n < 4_294_000_000 {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// The caller's address as the gateway saw it.
fn client_ip(req: &HttpRequest) -> String {
    req.headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
        .or_else(|| req.peer_addr().map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

fn email_or_422(raw: &str) -> Result<String, ApiError> {
    normalize_email(raw).ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            "email",
            "must be a valid email address",
        )])
    })
}

fn code_or_422(field: &str, raw: &str) -> Result<String, ApiError> {
    let code = raw.trim();
    if code.len() == CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code.to_owned())
    } else {
        Err(ApiError::validation(vec![FieldError::new(
            field,
            "must be 6 digits",
        )]))
    }
}

/// Spends one unit of a limit; 429 with `Retry-After` when there is none left.
async fn spend(
    state: &AuthState,
    key: String,
    limit: u32,
    period: Duration,
) -> Result<(), ApiError> {
    let decision = state
        .cache
        .rate_limit(&key, Quota { limit, period })
        .await
        .map_err(|e| ApiError::service_unavailable("rate limiter unavailable").with_source(e))?;
    if decision.allowed {
        Ok(())
    } else {
        let seconds = decision
            .retry_after
            .map_or(1, |d| d.as_secs_f64().ceil() as u64)
            .max(1);
        Err(ApiError::rate_limited(seconds))
    }
}

/// Checks a client's `redirect_uri` against the allow-list: the same origin as
/// an entry, and a path below the entry's path.
fn redirect_allowed(candidate: &str, allowed: &[String]) -> bool {
    let Ok(candidate) = url::Url::parse(candidate) else {
        return false;
    };
    if candidate.username() != ""
        || candidate.password().is_some()
        || candidate.fragment().is_some()
    {
        return false;
    }
    allowed
        .iter()
        .filter_map(|a| url::Url::parse(a).ok())
        .any(|entry| {
            entry.origin() == candidate.origin() && candidate.path().starts_with(entry.path())
        })
}

/// Rate limits, a new challenge (replacing any earlier one), and the mail.
async fn issue(
    state: &AuthState,
    req: &HttpRequest,
    email: &str,
    link_base: Option<String>,
) -> Result<ApiResponse<Requested>, ApiError> {
    let otp = &state.otp;
    spend(
        state,
        format!("otp:ip:{}", client_ip(req)),
        otp.ip_hourly_limit,
        HOUR,
    )
    .await?;
    spend(
        state,
        format!("otp:resend:{email}"),
        1,
        Duration::from_secs(otp.resend_interval_secs),
    )
    .await?;
    spend(state, format!("otp:hourly:{email}"), otp.hourly_limit, HOUR).await?;

    let code = new_code();
    let code_hash = state.secrets.otp_hash(email, &code);
    let link = link_base.map(|base| {
        let token = crate::secrets::random_credential("ml_");
        let separator = if base.contains('?') { '&' } else { '?' };
        (
            format!("{base}{separator}token={token}"),
            state.secrets.credential_hash(&token),
        )
    });
    let link_hash = link.as_ref().map(|(_, hash)| hash.clone());
    let ttl = otp.ttl_secs;
    let stored_email = email.to_owned();
    state
        .db
        .transaction(move |conn| {
            let now = Utc::now().naive_utc();
            diesel::update(
                otp_challenges::table
                    .filter(otp_challenges::email.eq(&stored_email))
                    .filter(otp_challenges::consumed_at.is_null()),
            )
            .set(otp_challenges::consumed_at.eq(now))
            .execute(conn)?;
            diesel::insert_into(otp_challenges::table)
                .values((
                    otp_challenges::id.eq(service_kit::ids::new_id("otp")),
                    otp_challenges::email.eq(&stored_email),
                    otp_challenges::code_hash.eq(&code_hash),
                    otp_challenges::link_hash.eq(link_hash),
                    otp_challenges::attempts.eq(0),
                    otp_challenges::created_at.eq(now),
                    otp_challenges::expires_at.eq(now + chrono::Duration::seconds(ttl as i64)),
                ))
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await?;

    let minutes = ttl.div_ceil(60);
    let text = match &link {
        Some((url, _)) => format!(
            "Sign in to Spaceport by opening this link:\n\n{url}\n\nor enter the code {code}.\n\n\
             Both expire in {minutes} minutes and work once. If you did not ask for them, ignore this message."
        ),
        None => format!(
            "Your Spaceport sign-in code is {code}\n\nIt expires in {minutes} minutes and works once.\n\
             If you did not ask for it, ignore this message."
        ),
    };
    let message = mail::Message {
        to: email.to_owned(),
        subject: format!("Your Spaceport sign-in code: {code}"),
        text,
        html: None,
    };
    state.mailer.send(message).await.map_err(|e| match e {
        mail::MailError::InvalidAddress(_) => {
            ApiError::validation(vec![FieldError::new("email", "cannot receive mail")])
        }
        other => ApiError::service_unavailable("could not send the code, try again shortly")
            .with_source(other),
    })?;
    // The same answer whether or not the address belongs to anyone.
    Ok(ApiResponse::ok(Requested { expires_in: ttl })
        .message("if the address can receive mail, a code is on its way"))
}

enum Proof {
    Code { email: String, code: String },
    Link { token: String },
}

/// Who signed in, where, and their new session.
pub(crate) struct SignedInParts {
    user: User,
    membership: Option<(String, accounts::Granted)>,
    issued: sessions::Issued,
    /// The account (and its personal workspace) was created by this sign-in,
    /// which recorded its `member.added`.
    new_account: bool,
}

enum Check {
    Wrong,
    /// Boxed: it is much larger than `Wrong`.
    Right(Box<SignedInParts>),
}

/// The person with this (verified) email signs in: their account and personal
/// workspace are created the first time, and a session starts in their default
/// workspace. Runs inside the caller's transaction.
pub(crate) fn open_session(
    conn: &mut store::DbConnection,
    catalog: &Catalog,
    email: &str,
    refresh_ttl: chrono::Duration,
    request_id: Option<&str>,
) -> Result<SignedInParts, StoreError> {
    let (user, new_account) = accounts::find_or_create_user(conn, email, request_id)?;
    let membership = accounts::default_membership(conn, &user.id)?;
    let scopes = membership
        .as_ref()
        .map(|(_, role)| role.scopes(catalog))
        .unwrap_or_default();
    let issued = sessions::start(
        conn,
        &user.id,
        membership.as_ref().map(|(w, _)| w.as_str()),
        &scopes.to_string(),
        refresh_ttl,
    )?;
    Ok(SignedInParts {
        user,
        membership,
        issued,
        new_account,
    })
}

/// The answer of every successful sign-in, once its transaction committed:
/// tokens and the person.
pub(crate) fn signed_in(state: &AuthState, parts: SignedInParts) -> ApiResponse<SignedIn> {
    let SignedInParts {
        user,
        membership,
        issued,
        new_account,
    } = parts;
    if new_account {
        state.events.nudge();
    }
    let grant = Grant {
        subject: user.id.clone(),
        principal_type: PrincipalType::User,
        client_id: "spaceport".into(),
        workspace_id: membership.as_ref().map(|(w, _)| w.clone()),
        scopes: membership
            .map(|(_, role)| role.scopes(&state.scopes))
            .unwrap_or_else(ScopeSet::empty),
        session_id: Some(issued.family_id.clone()),
    };
    let (access_token, expires_in) = state.access_token(&grant);
    ApiResponse::ok(SignedIn {
        access_token,
        refresh_token: issued.token,
        token_type: "Bearer",
        expires_in,
        user: UserView {
            id: user.id.clone(),
            user_id: user.id,
            email: user.email,
            name: user.name,
        },
    })
}

/// Checks the proof, consumes the challenge, and signs the person in (creating
/// their account and personal workspace the first time).
async fn complete(state: &AuthState, proof: Proof) -> Result<ApiResponse<SignedIn>, ApiError> {
    let otp = state.otp.clone();
    let hour = Some(HOUR);
    // Guessing is limited per email across codes; link tokens are unguessable.
    let failures_key = match &proof {
        Proof::Code { email, .. } => Some(format!("otp:failures:{email}")),
        Proof::Link { .. } => None,
    };
    if let Some(key) = &failures_key {
        let failures = state.cache.incr(key, 0, hour).await.map_err(|e| {
            ApiError::service_unavailable("rate limiter unavailable").with_source(e)
        })?;
        if failures >= i64::from(otp.failed_guess_budget) {
            return Err(ApiError::rate_limited(3600));
        }
    }
    let presented = match &proof {
        Proof::Code { email, code } => state.secrets.otp_hash(email, code),
        Proof::Link { token } => state.secrets.credential_hash(token),
    };
    let refresh_ttl = state.refresh_ttl();
    let catalog = state.scopes.clone();
    let request_id = service_kit::request_id::current();
    let check = state
        .db
        .transaction(move |conn| {
            let now = Utc::now().naive_utc();
            let active = otp_challenges::table
                .filter(otp_challenges::consumed_at.is_null())
                .filter(otp_challenges::expires_at.gt(now))
                .filter(otp_challenges::attempts.lt(otp.max_attempts as i32))
                .select((
                    otp_challenges::id,
                    otp_challenges::email,
                    otp_challenges::code_hash,
                    otp_challenges::link_hash,
                    otp_challenges::attempts,
                ));
            let challenge = match &proof {
                Proof::Code { email, .. } => active
                    .filter(otp_challenges::email.eq(email))
                    .order(otp_challenges::created_at.desc())
                    .first::<(String, String, String, Option<String>, i32)>(conn)
                    .optional()?,
                Proof::Link { .. } => active
                    .filter(otp_challenges::link_hash.eq(&presented))
                    .first::<(String, String, String, Option<String>, i32)>(conn)
                    .optional()?,
            };
            let Some((id, email, code_hash, link_hash, attempts)) = challenge else {
                return Ok(Check::Wrong);
            };
            let stored = match &proof {
                Proof::Code { .. } => code_hash,
                Proof::Link { .. } => link_hash.unwrap_or_default(),
            };
            let matches = stored.len() == presented.len()
                && bool::from(stored.as_bytes().ct_eq(presented.as_bytes()));
            if !matches {
                let attempts = attempts + 1;
                let burnt: Option<NaiveDateTime> =
                    (attempts >= otp.max_attempts as i32).then_some(now);
                diesel::update(otp_challenges::table.find(&id))
                    .set((
                        otp_challenges::attempts.eq(attempts),
                        otp_challenges::consumed_at.eq(burnt),
                    ))
                    .execute(conn)?;
                return Ok(Check::Wrong);
            }
            // Single use: only one concurrent verification consumes it.
            let consumed = diesel::update(
                otp_challenges::table
                    .find(&id)
                    .filter(otp_challenges::consumed_at.is_null()),
            )
            .set(otp_challenges::consumed_at.eq(now))
            .execute(conn)?;
            if consumed != 1 {
                return Ok(Check::Wrong);
            }
            Ok::<_, StoreError>(Check::Right(Box::new(open_session(
                conn,
                &catalog,
                &email,
                refresh_ttl,
                request_id.as_deref(),
            )?)))
        })
        .await?;

    let parts = match check {
        Check::Right(parts) => *parts,
        Check::Wrong => {
            if let Some(key) = &failures_key {
                let _ = state.cache.incr(key, 1, hour).await;
            }
            return Err(ApiError::unauthorized("invalid or expired code"));
        }
    };
    Ok(signed_in(state, parts))
}

/// Request a sign-in code (SpaceOS)
///
/// Mails a six-digit code. The answer is the same whether or not the address
/// belongs to anyone; a new code replaces any earlier code or link.
#[utoipa::path(
    post,
    path = "/api/v1/auth/otp/request",
    operation_id = "otp_request",
    tag = "sign-in",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "If the address can receive mail, a code is on its way.", body = Envelope<Requested>),
        (status = 422, description = "`email` is not a valid address, or cannot receive mail.", body = ErrorEnvelope),
        (status = 429, description = "Too many codes: per address (resend interval, hourly cap) or per client IP (hourly cap).", body = ErrorEnvelope,
            headers(("retry-after" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The rate limiter or the mail transport is unavailable.", body = ErrorEnvelope),
    )
)]
pub async fn otp_request(
    req: HttpRequest,
    body: Json<CodeRequest>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Requested>, ApiError> {
    let email = email_or_422(&body.email)?;
    issue(&state, &req, &email, None).await
}

/// Sign in with the code (SpaceOS)
///
/// A correct code is consumed; the person's account and personal workspace are
/// created on first sign-in, and a session starts in their default workspace.
#[utoipa::path(
    post,
    path = "/api/v1/auth/otp/verify",
    operation_id = "otp_verify",
    tag = "sign-in",
    request_body = CodeVerification,
    responses(
        (status = 200, description = "Signed in.", body = Envelope<SignedIn>),
        (status = 401, description = "Wrong, used or expired code (five wrong guesses burn a code).", body = ErrorEnvelope),
        (status = 422, description = "`email` is not an address, or `otp` is not six digits.", body = ErrorEnvelope),
        (status = 429, description = "Too many wrong guesses for this address.", body = ErrorEnvelope,
            headers(("retry-after" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The rate limiter or the database is unavailable.", body = ErrorEnvelope),
    )
)]
pub async fn otp_verify(
    body: Json<CodeVerification>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<SignedIn>, ApiError> {
    let email = email_or_422(&body.email)?;
    let code = code_or_422("otp", &body.otp)?;
    complete(&state, Proof::Code { email, code }).await
}

/// Request a magic link (gospace)
///
/// Mails a sign-in link and, in the same mail, a six-digit code; both prove
/// the one challenge, once. The answer is the same whether or not the address
/// belongs to anyone.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    operation_id = "magic_link_request",
    tag = "sign-in",
    request_body = LinkRequest,
    responses(
        (status = 200, description = "If the address can receive mail, a link and a code are on their way.", body = Envelope<Requested>),
        (status = 422, description = "`email` is not a valid address or cannot receive mail, or `redirect_uri` is not allowed.", body = ErrorEnvelope),
        (status = 429, description = "Too many requests: per address (resend interval, hourly cap) or per client IP (hourly cap).", body = ErrorEnvelope,
            headers(("retry-after" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The rate limiter or the mail transport is unavailable.", body = ErrorEnvelope),
    )
)]
pub async fn login(
    req: HttpRequest,
    body: Json<LinkRequest>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Requested>, ApiError> {
    let LinkRequest {
        email,
        redirect_uri,
    } = body.into_inner();
    let email = email_or_422(&email)?;
    let base = match redirect_uri {
        None => state.magic_links.default_redirect_uri.clone(),
        Some(uri) if redirect_allowed(&uri, &state.magic_links.allowed_redirect_uris) => uri,
        Some(_) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "redirect_uri",
                "is not an allowed redirect",
            )]));
        }
    };
    issue(&state, &req, &email, Some(base)).await
}

/// Sign in with the link's token or the code (gospace)
///
/// Send either `{token}` (from the link) or `{email, code}`.
#[utoipa::path(
    post,
    path = "/v1/auth/verify",
    operation_id = "magic_link_verify",
    tag = "sign-in",
    request_body = LinkVerification,
    responses(
        (status = 200, description = "Signed in.", body = Envelope<SignedIn>),
        (status = 401, description = "Unknown, used or expired token or code.", body = ErrorEnvelope),
        (status = 422, description = "Neither `{token}` nor `{email, code}` (field `body`), a bad `email`, or a `code` that is not six digits.", body = ErrorEnvelope),
        (status = 429, description = "Too many wrong codes for this address.", body = ErrorEnvelope,
            headers(("retry-after" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The rate limiter or the database is unavailable.", body = ErrorEnvelope),
    )
)]
pub async fn verify(
    body: Json<LinkVerification>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<SignedIn>, ApiError> {
    let proof = match body.into_inner() {
        LinkVerification {
            token: Some(token),
            email: None,
            code: None,
        } => {
            if !token.starts_with("ml_") || token.len() > 128 {
                return Err(ApiError::unauthorized("invalid or expired code"));
            }
            Proof::Link { token }
        }
        LinkVerification {
            token: None,
            email: Some(email),
            code: Some(code),
        } => Proof::Code {
            email: email_or_422(&email)?,
            code: code_or_422("code", &code)?,
        },
        _ => {
            return Err(ApiError::validation(vec![FieldError::new(
                "body",
                "send either {token} or {email, code}",
            )]));
        }
    };
    complete(&state, proof).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let code = new_code();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn redirects_must_match_an_allowed_origin_and_path() {
        let allowed = vec![
            "https://app.example.com/auth/".to_owned(),
            "http://localhost:3000/".to_owned(),
        ];
        for ok in [
            "https://app.example.com/auth/callback",
            "https://app.example.com/auth/x?next=1",
            "http://localhost:3000/anything",
        ] {
            assert!(redirect_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "https://app.example.com/other",
            "https://app.example.com.evil.test/auth/",
            "http://app.example.com/auth/",
            "https://user:pw@app.example.com/auth/",
            "https://app.example.com/auth/#frag",
            "javascript:alert(1)",
            "not a url",
            "http://localhost:3001/",
        ] {
            assert!(!redirect_allowed(bad, &allowed), "{bad}");
        }
    }
}
