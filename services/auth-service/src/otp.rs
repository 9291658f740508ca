//! Sign-in by one-time code: `POST /api/v1/auth/otp/request` and
//! `POST /api/v1/auth/otp/verify` (SpaceOS).

use crate::AuthState;
use crate::accounts::{self, User, normalize_email};
use crate::schema::otp_challenges;
use crate::sessions;
use crate::tokens::Grant;
use actix_web::{HttpRequest, web};
use cache::Quota;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::{PrincipalType, ScopeSet};
use serde::{Deserialize, Serialize};
use service_kit::{ApiError, ApiResponse, FieldError, Json};
use std::time::Duration;
use store::StoreError;
use subtle::ConstantTimeEq;

const CODE_DIGITS: usize = 6;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeVerification {
    email: String,
    otp: String,
}

#[derive(Debug, Serialize)]
pub struct Requested {
    expires_in: u64,
}

#[derive(Debug, Serialize)]
pub struct UserView {
    id: String,
    email: String,
    name: String,
}

#[derive(Debug, Serialize)]
pub struct SignedIn {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
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

pub async fn request(
    req: HttpRequest,
    body: Json<CodeRequest>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Requested>, ApiError> {
    let email = email_or_422(&body.email)?;
    let otp = &state.otp;
    spend(
        &state,
        format!("otp:ip:{}", client_ip(&req)),
        otp.ip_hourly_limit,
        Duration::from_secs(3600),
    )
    .await?;
    spend(
        &state,
        format!("otp:resend:{email}"),
        1,
        Duration::from_secs(otp.resend_interval_secs),
    )
    .await?;
    spend(
        &state,
        format!("otp:hourly:{email}"),
        otp.hourly_limit,
        Duration::from_secs(3600),
    )
    .await?;

    let code = new_code();
    let code_hash = state.secrets.otp_hash(&email, &code);
    let ttl = otp.ttl_secs;
    let stored_email = email.clone();
    state
        .db
        .transaction(move |conn| {
            let now = Utc::now().naive_utc();
            // A new code replaces any earlier one.
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
                    otp_challenges::attempts.eq(0),
                    otp_challenges::created_at.eq(now),
                    otp_challenges::expires_at.eq(now + chrono::Duration::seconds(ttl as i64)),
                ))
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await?;

    let minutes = ttl.div_ceil(60);
    let message = mail::Message {
        to: email.clone(),
        subject: format!("Your Spaceport sign-in code: {code}"),
        text: format!(
            "Your Spaceport sign-in code is {code}\n\nIt expires in {minutes} minutes and works once.\n\
             If you did not ask for it, ignore this message."
        ),
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

enum Check {
    Wrong,
    Right(
        User,
        Option<(String, crate::accounts::Role)>,
        sessions::Issued,
    ),
}

pub async fn verify(
    body: Json<CodeVerification>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<SignedIn>, ApiError> {
    let email = email_or_422(&body.email)?;
    let code = body.otp.trim().to_owned();
    if code.len() != CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::validation(vec![FieldError::new(
            "otp",
            "must be 6 digits",
        )]));
    }
    let otp = state.otp.clone();
    let failures_key = format!("otp:failures:{email}");
    let hour = Some(Duration::from_secs(3600));
    let failures = state
        .cache
        .incr(&failures_key, 0, hour)
        .await
        .map_err(|e| ApiError::service_unavailable("rate limiter unavailable").with_source(e))?;
    if failures >= i64::from(otp.failed_guess_budget) {
        return Err(ApiError::rate_limited(3600));
    }

    let presented_hash = state.secrets.otp_hash(&email, &code);
    let refresh_ttl = state.refresh_ttl();
    let check = state
        .db
        .transaction(move |conn| {
            let now = Utc::now().naive_utc();
            let challenge = otp_challenges::table
                .filter(otp_challenges::email.eq(&email))
                .filter(otp_challenges::consumed_at.is_null())
                .filter(otp_challenges::expires_at.gt(now))
                .filter(otp_challenges::attempts.lt(otp.max_attempts as i32))
                .order(otp_challenges::created_at.desc())
                .select((
                    otp_challenges::id,
                    otp_challenges::code_hash,
                    otp_challenges::attempts,
                ))
                .first::<(String, String, i32)>(conn)
                .optional()?;
            let Some((id, stored_hash, attempts)) = challenge else {
                return Ok(Check::Wrong);
            };
            let matches: bool = stored_hash
                .as_bytes()
                .ct_eq(presented_hash.as_bytes())
                .into();
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
            // Single use: only one concurrent verification consumes the code.
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
            let (user, _created) = accounts::find_or_create_user(conn, &email)?;
            let membership = accounts::default_membership(conn, &user.id)?;
            let scopes = membership
                .as_ref()
                .map(|(_, role)| role.scopes())
                .unwrap_or_default();
            let issued = sessions::start(
                conn,
                &user.id,
                membership.as_ref().map(|(w, _)| w.as_str()),
                &scopes.to_string(),
                refresh_ttl,
            )?;
            Ok::<_, StoreError>(Check::Right(user, membership, issued))
        })
        .await?;

    let (user, membership, issued) = match check {
        Check::Right(user, membership, issued) => (user, membership, issued),
        Check::Wrong => {
            let _ = state.cache.incr(&failures_key, 1, hour).await;
            return Err(ApiError::unauthorized("invalid or expired code"));
        }
    };
    let grant = Grant {
        subject: user.id.clone(),
        principal_type: PrincipalType::User,
        client_id: "spaceport".into(),
        workspace_id: membership.as_ref().map(|(w, _)| w.clone()),
        scopes: membership
            .map(|(_, role)| role.scopes())
            .unwrap_or_else(ScopeSet::empty),
        session_id: Some(issued.family_id.clone()),
    };
    let (access_token, expires_in) = state.access_token(&grant);
    Ok(ApiResponse::ok(SignedIn {
        access_token,
        refresh_token: issued.token,
        token_type: "Bearer",
        expires_in,
        user: UserView {
            id: user.id,
            email: user.email,
            name: user.name,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::new_code;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let code = new_code();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
