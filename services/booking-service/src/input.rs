//! Checks of client input shared by the resources: names, slugs, time zones,
//! emails, RFC 3339 times, path ids. Each check adds `{field, message}` entries,
//! so one answer names every bad field.

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use service_kit::{ApiError, FieldError};

pub const MAX_NAME: usize = 100;
pub const MAX_SLUG: usize = 64;
pub const MAX_TEXT: usize = 2000;
pub const MAX_ADDRESS: usize = 500;
pub const MAX_EMAIL: usize = 254;
/// Longest string a query parameter may carry.
const MAX_QUERY_TEXT: usize = 256;
/// PostgreSQL text cannot hold NUL characters; they are refused up front.
const NUL_MESSAGE: &str = "must not contain NUL characters";

/// Field errors gathered before answering 422 with all of them.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when nothing was wrong, else 422 naming every field.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }

    /// A required, trimmed text of 1..=`max` characters.
    pub fn name(&mut self, field: &str, value: &str, max: usize) -> String {
        let trimmed = value.trim();
        if value.contains('\0') {
            self.add(field, NUL_MESSAGE);
        } else if trimmed.is_empty() {
            self.add(field, "must not be empty");
        } else if trimmed.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
        trimmed.to_owned()
    }

    /// An optional text of at most `max` characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.contains('\0') {
            self.add(field, NUL_MESSAGE);
        } else if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
    }

    /// Lowercase letters, digits and inner hyphens; globally unique (checked by
    /// the database).
    pub fn slug(&mut self, field: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= MAX_SLUG
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if !ok {
            self.add(
                field,
                format!(
                    "must be 1 to {MAX_SLUG} characters of a-z, 0-9 and '-', not starting or ending with '-'"
                ),
            );
        }
    }

    /// An IANA time zone name, e.g. `Europe/London`.
    pub fn timezone(&mut self, field: &str, value: &str) -> Option<Tz> {
        match value.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.add(field, "must be an IANA time zone, e.g. Europe/London");
                None
            }
        }
    }

    pub fn email(&mut self, field: &str, value: &str) -> String {
        let email = value.trim().to_owned();
        if !valid_email(&email) {
            self.add(field, "must be a valid email address");
        }
        email
    }

    /// An RFC 3339 time with an offset (`Z` or `±hh:mm`).
    pub fn time(&mut self, field: &str, value: &str) -> Option<DateTime<Utc>> {
        match parse_time(value) {
            Some(t) => Some(t),
            None => {
                self.add(
                    field,
                    "must be an RFC 3339 time with an offset, e.g. 2025-01-15T10:00:00Z",
                );
                None
            }
        }
    }

    /// An integer within `range`.
    pub fn within(&mut self, field: &str, value: i64, range: std::ops::RangeInclusive<i64>) {
        if !range.contains(&value) {
            self.add(
                field,
                format!("must be between {} and {}", range.start(), range.end()),
            );
        }
    }
}

pub fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    if value.len() > 64 {
        return None;
    }
    let t = DateTime::parse_from_rfc3339(value)
        .ok()?
        .with_timezone(&Utc);
    // Far outside what the database types and chrono arithmetic handle safely.
    (t.timestamp().abs() < 253_402_300_799 / 2).then_some(t)
}

fn valid_email(email: &str) -> bool {
    if email.len() > MAX_EMAIL || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('@')
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
}

/// A stored UTC timestamp on the wire.
pub fn wire_time(t: NaiveDateTime) -> String {
    service_kit::time::format_rfc3339(t.and_utc())
}

/// A free-text query parameter: 400 for NUL characters or oversize values.
pub fn query_text(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.contains('\0') => Err(ApiError::invalid_query(field, NUL_MESSAGE)),
        Some(v) if v.len() > MAX_QUERY_TEXT => Err(ApiError::invalid_query(
            field,
            format!("must be at most {MAX_QUERY_TEXT} bytes"),
        )),
        _ => Ok(()),
    }
}

/// Whether a slug could exist (a path's slug that cannot answers 404 at once).
pub fn plausible_slug(value: &str) -> bool {
    let mut p = Problems::new();
    p.slug("slug", value);
    p.is_empty()
}

/// 404 for ids that cannot exist, before any query.
pub fn known_id(prefix: &str, id: &str, what: &str) -> Result<(), ApiError> {
    if service_kit::ids::is_valid(prefix, id) {
        Ok(())
    } else {
        Err(ApiError::not_found(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for good in ["acme", "a", "acme-hq-2"] {
            let mut p = Problems::new();
            p.slug("slug", good);
            assert!(p.is_empty(), "{good}");
        }
        for bad in ["", "Acme", "-a", "a-", "a_b", "a b", &"a".repeat(65), "ä"] {
            let mut p = Problems::new();
            p.slug("slug", bad);
            assert!(!p.is_empty(), "{bad}");
        }
    }

    #[test]
    fn emails_and_times() {
        assert!(valid_email("john@example.com"));
        for bad in [
            "",
            "john",
            "john@",
            "@example.com",
            "a b@example.com",
            "a@b",
            "a@@b.c",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(parse_time("2025-01-15T10:00:00Z").is_some());
        assert!(parse_time("2025-01-15T10:00:00+02:00").is_some());
        assert!(parse_time("2025-01-15T10:00:00").is_none());
        assert!(parse_time("2025-01-15").is_none());
        assert!(parse_time("9999-12-31T23:59:59Z").is_none());
    }
}
