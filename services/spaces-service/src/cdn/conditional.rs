//! The HTTP a CDN answer depends on besides the file: conditional requests
//! (`If-None-Match`, `If-Modified-Since`) and byte ranges (`Range`,
//! `If-Range`), as RFC 9110 defines them, reduced to what a file server
//! needs: one range per request (a multi-range request gets the whole file,
//! which RFC 9110 allows).

use actix_web::HttpRequest;
use actix_web::http::header::{self, HttpDate};
use std::ops::Range;
use std::str::FromStr;
use std::time::SystemTime;

/// Whether the client's copy is current: `If-None-Match` lists `etag`
/// (weak comparison, as RFC 9110 asks for this header) or is `*`; without
/// `If-None-Match`, `If-Modified-Since` is not before `modified`.
pub fn not_modified(req: &HttpRequest, etag: &str, modified: SystemTime) -> bool {
    if let Some(value) = req.headers().get(header::IF_NONE_MATCH) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        return value.split(',').map(str::trim).any(|tag| {
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag.trim_start_matches("W/")
        });
    }
    match since(req, header::IF_MODIFIED_SINCE) {
        Some(since) => whole_seconds(modified) <= since,
        None => false,
    }
}

/// What a `Range` header asks of a representation of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// No usable range (none asked, several, malformed, or `If-Range` no
    /// longer current): the whole representation.
    Whole,
    /// One satisfiable range, its end exclusive.
    Part(Range<u64>),
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// The range `req` asks of a representation of `size` bytes tagged `etag`
/// and last changed at `modified`.
pub fn requested(req: &HttpRequest, etag: &str, modified: SystemTime, size: u64) -> Ranged {
    let Some(range) = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ranged::Whole;
    };
    if let Some(condition) = req
        .headers()
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
    {
        // A strong tag must match exactly; a date must be the exact
        // modification time. Anything else: the client's part is stale.
        let current = match HttpDate::from_str(condition.trim()) {
            Ok(date) => whole_seconds(modified) == whole_seconds(SystemTime::from(date)),
            Err(_) => condition.trim() == etag && !etag.starts_with("W/"),
        };
        if !current {
            return Ranged::Whole;
        }
    }
    parse_range(range, size)
}

/// A `bytes=` range of `size` bytes: `first-last`, `first-` or `-suffix`.
pub fn parse_range(value: &str, size: u64) -> Ranged {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `-suffix`: the last `suffix` bytes.
        return match number(last) {
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if size == 0 => Ranged::Unsatisfiable,
            Some(suffix) => Ranged::Part(size.saturating_sub(suffix)..size),
            None => Ranged::Whole,
        };
    }
    let Some(first) = number(first) else {
        return Ranged::Whole;
    };
    let last = match (last.is_empty(), number(last)) {
        (true, _) => None,
        (false, Some(last)) if last >= first => Some(last),
        (false, _) => return Ranged::Whole,
    };
    if first >= size {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part(first..last.map_or(size, |l| l.saturating_add(1).min(size)))
}

/// `Last-Modified` of a time.
pub fn http_date(at: SystemTime) -> String {
    HttpDate::from(at).to_string()
}

fn since(req: &HttpRequest, name: header::HeaderName) -> Option<u64> {
    let value = req.headers().get(name)?.to_str().ok()?;
    let date = HttpDate::from_str(value.trim()).ok()?;
    Some(whole_seconds(SystemTime::from(date)))
}

fn whole_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use std::time::Duration;

    const TAG: &str = "\"abc\"";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn if_none_match_and_if_modified_since() {
        let modified = at(1_700_000_000);
        let req = |name: &str, value: &str| {
            TestRequest::default()
                .insert_header((name, value))
                .to_http_request()
        };
        for matching in ["\"abc\"", "\"x\", \"abc\"", "W/\"abc\"", "*"] {
            assert!(
                not_modified(&req("if-none-match", matching), TAG, modified),
                "{matching}"
            );
        }
        assert!(!not_modified(
            &req("if-none-match", "\"abd\""),
            TAG,
            modified
        ));
        let date = http_date(modified);
        assert!(not_modified(
            &req("if-modified-since", &date),
            TAG,
            modified
        ));
        assert!(!not_modified(
            &req("if-modified-since", &http_date(at(1_600_000_000))),
            TAG,
            modified
        ));
        // If-None-Match wins over If-Modified-Since.
        let both = TestRequest::default()
            .insert_header(("if-none-match", "\"other\""))
            .insert_header(("if-modified-since", date.as_str()))
            .to_http_request();
        assert!(!not_modified(&both, TAG, modified));
        assert!(!not_modified(
            &TestRequest::default().to_http_request(),
            TAG,
            modified
        ));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Ranged::Part(0..100));
        assert_eq!(parse_range("bytes=900-", 1000), Ranged::Part(900..1000));
        assert_eq!(parse_range("bytes=-100", 1000), Ranged::Part(900..1000));
        assert_eq!(parse_range("bytes=-5000", 1000), Ranged::Part(0..1000));
        assert_eq!(parse_range("bytes=990-5000", 1000), Ranged::Part(990..1000));
        assert_eq!(parse_range("bytes=1000-", 1000), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Ranged::Unsatisfiable);
        for ignored in [
            "bytes=0-1,5-9",
            "bytes=5-1",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(ignored, 1000), Ranged::Whole, "{ignored}");
        }
    }

    #[test]
    fn if_range_keeps_the_range_only_while_current() {
        let modified = at(1_700_000_000);
        let with = |condition: &str| {
            TestRequest::default()
                .insert_header(("range", "bytes=0-9"))
                .insert_header(("if-range", condition))
                .to_http_request()
        };
        assert_eq!(
            requested(&with(TAG), TAG, modified, 100),
            Ranged::Part(0..10)
        );
        assert_eq!(
            requested(&with(&http_date(modified)), TAG, modified, 100),
            Ranged::Part(0..10)
        );
        assert_eq!(
            requested(&with("\"old\""), TAG, modified, 100),
            Ranged::Whole
        );
        assert_eq!(
            requested(&with(&http_date(at(1))), TAG, modified, 100),
            Ranged::Whole
        );
    }
}
