//! Offset and cursor pagination: parameter validation, metadata, opaque cursors.

use crate::envelope::Meta;
use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Deep offset pages are expensive and never what a person wants; cursors serve those.
pub const MAX_PAGE: u32 = 100_000;

fn check_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        l @ 1..=MAX_LIMIT => Ok(l),
        _ => Err(ApiError::invalid_query(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// `?page=&limit=` as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OffsetQuery {
    pub page: Option<u32>,
    pub limit: Option<u32>,
}

/// A validated offset page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPage {
    pub page: u32,
    pub limit: u32,
}

impl OffsetQuery {
    pub fn validate(&self) -> Result<OffsetPage, ApiError> {
        let page = self.page.unwrap_or(1);
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(ApiError::invalid_query(
                "page",
                format!("must be between 1 and {MAX_PAGE}"),
            ));
        }
        Ok(OffsetPage {
            page,
            limit: check_limit(self.limit)?,
        })
    }
}

impl OffsetPage {
    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.limit)
    }

    pub fn meta(&self, total: u64) -> Meta {
        Meta::Offset {
            page: self.page,
            limit: self.limit,
            total,
        }
    }
}

/// `?cursor=&limit=` as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CursorQuery {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Where the previous page ended: lists are ordered by `(created_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorPosition {
    /// Milliseconds since the epoch of the last item's creation.
    #[serde(rename = "t")]
    pub created_at_ms: i64,
    #[serde(rename = "i")]
    pub id: String,
}

/// A validated cursor request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorPage {
    pub after: Option<CursorPosition>,
    pub limit: u32,
}

impl CursorPage {
    /// Metadata for a page fetched with `limit + 1` rows: the extra row only tells
    /// whether there is more; `last` is the last item actually returned.
    pub fn meta(&self, codec: &CursorCodec, has_more: bool, last: Option<&CursorPosition>) -> Meta {
        Meta::Cursor {
            limit: self.limit,
            next_cursor: if has_more {
                last.map(|p| codec.encode(p))
            } else {
                None
            },
            has_more,
        }
    }
}

/// gospace's page sizes: `page_size` 1–500, 50 by default.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;
/// How deep a gospace list may be read (by `page` or by cursor).
pub const MAX_OFFSET: u64 = 10_000_000;

/// gospace's list parameters as sent: `?page_size=&page=&cursor=&sort=`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    pub page_size: Option<u32>,
    pub page: Option<u32>,
    pub cursor: Option<String>,
    pub sort: Option<String>,
}

/// An order of a list: `FIELD.asc` or `FIELD.desc` (ties broken by id, the
/// same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub field: &'static str,
    pub descending: bool,
}

/// A validated gospace list request: which items, in which order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRequest {
    pub offset: u64,
    pub limit: u32,
    pub sort: Sort,
}

/// Where a page sits in its list; the answer's cursors come from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub offset: u64,
    pub limit: u32,
    pub total: u64,
}

impl ListQuery {
    /// `fields` are the list's documented sort fields; `created_at.desc` is the
    /// default order, so `created_at` must be one of them. A cursor overrides
    /// `page`; `page_size` and `sort` are read from every request.
    pub fn validate(&self, fields: &[&'static str]) -> Result<ListRequest, ApiError> {
        let limit = match self.page_size.unwrap_or(DEFAULT_PAGE_SIZE) {
            l @ 1..=MAX_PAGE_SIZE => l,
            _ => {
                return Err(ApiError::invalid_query(
                    "page_size",
                    format!("must be between 1 and {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let sort = match self.sort.as_deref() {
            None => Sort {
                field: "created_at",
                descending: true,
            },
            Some(sort) => {
                let parsed = sort.rsplit_once('.').and_then(|(field, direction)| {
                    let field = fields.iter().find(|f| **f == field)?;
                    let descending = match direction {
                        "asc" => false,
                        "desc" => true,
                        _ => return None,
                    };
                    Some(Sort { field, descending })
                });
                parsed.ok_or_else(|| {
                    let allowed: Vec<_> = fields.iter().map(|f| format!("{f}.asc|desc")).collect();
                    ApiError::invalid_query(
                        "sort",
                        format!("must be one of {}", allowed.join(", ")),
                    )
                })?
            }
        };
        let offset = match (&self.cursor, self.page) {
            (Some(cursor), _) => decode_window_cursor(cursor)?,
            (None, None) => 0,
            (None, Some(page)) if (1..=MAX_PAGE).contains(&page) => {
                u64::from(page - 1) * u64::from(limit)
            }
            (None, Some(_)) => {
                return Err(ApiError::invalid_query(
                    "page",
                    format!("must be between 1 and {MAX_PAGE}"),
                ));
            }
        };
        if offset > MAX_OFFSET {
            return Err(ApiError::invalid_query(
                "page",
                "is beyond the end of any list",
            ));
        }
        Ok(ListRequest {
            offset,
            limit,
            sort,
        })
    }
}

impl ListRequest {
    pub fn window(&self, total: u64) -> Window {
        Window {
            offset: self.offset,
            limit: self.limit,
            total,
        }
    }
}

impl Window {
    pub(crate) fn links(&self) -> crate::envelope::Links {
        let end = self.offset + u64::from(self.limit);
        crate::envelope::Links {
            next: (end < self.total).then(|| window_cursor(end)),
            prev: (self.offset > 0)
                .then(|| window_cursor(self.offset.saturating_sub(u64::from(self.limit)))),
            total: Some(self.total),
            per_page: self.limit,
        }
    }
}

/// An opaque cursor for a position in a sorted list (gospace lists: the list
/// is read by offset, so a cursor is where the next page starts).
fn window_cursor(offset: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

fn decode_window_cursor(cursor: &str) -> Result<u64, ApiError> {
    let invalid = || ApiError::invalid_query("cursor", "is not a valid cursor");
    if cursor.len() > 64 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.strip_prefix("o:"))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n <= MAX_OFFSET)
        .ok_or_else(invalid)
}

const TAG_LEN: usize = 16;

/// Cursors are opaque to clients and tamper-evident: the position is signed with a
/// per-service key, so a client can neither forge nor edit one.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec([redacted])")
    }
}

impl CursorCodec {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        CursorCodec { key: key.into() }
    }

    fn tag(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    pub fn encode(&self, position: &CursorPosition) -> String {
        let mut bytes = serde_json::to_vec(position).expect("cursor serializes");
        let tag = self.tag(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(&self, cursor: &str) -> Result<CursorPosition, ApiError> {
        let invalid = || ApiError::invalid_query("cursor", "is not a valid cursor");
        if cursor.len() > 512 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        if bytes.len() <= TAG_LEN {
            return Err(invalid());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        // verify_truncated_left compares in constant time.
        self.tag(payload)
            .verify_truncated_left(tag)
            .map_err(|_| invalid())?;
        serde_json::from_slice(payload).map_err(|_| invalid())
    }

    pub fn validate(&self, query: &CursorQuery) -> Result<CursorPage, ApiError> {
        Ok(CursorPage {
            after: query
                .cursor
                .as_deref()
                .map(|c| self.decode(c))
                .transpose()?,
            limit: check_limit(query.limit)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_defaults_and_bounds() {
        let page = OffsetQuery::default().validate().unwrap();
        assert_eq!(page, OffsetPage { page: 1, limit: 20 });
        assert_eq!(page.offset(), 0);
        let page = OffsetQuery {
            page: Some(3),
            limit: Some(100),
        }
        .validate()
        .unwrap();
        assert_eq!(page.offset(), 200);
        for (page, limit, field) in [
            (Some(0), None, "page"),
            (None, Some(0), "limit"),
            (None, Some(101), "limit"),
        ] {
            let err = OffsetQuery { page, limit }.validate().unwrap_err();
            assert_eq!(err.status.as_u16(), 400);
            assert_eq!(err.errors[0].field, field);
        }
    }

    #[test]
    fn list_query_defaults_bounds_sort_and_cursors() {
        let fields = ["created_at", "name"];
        let request = ListQuery::default().validate(&fields).unwrap();
        assert_eq!(
            request,
            ListRequest {
                offset: 0,
                limit: 50,
                sort: Sort {
                    field: "created_at",
                    descending: true
                }
            }
        );
        let query = |page_size, page, cursor: Option<&str>, sort: Option<&str>| ListQuery {
            page_size,
            page,
            cursor: cursor.map(str::to_owned),
            sort: sort.map(str::to_owned),
        };
        let request = query(Some(10), Some(3), None, Some("name.asc"))
            .validate(&fields)
            .unwrap();
        assert_eq!((request.offset, request.limit), (20, 10));
        assert_eq!(request.sort.field, "name");
        assert!(!request.sort.descending);
        for (q, field) in [
            (query(Some(0), None, None, None), "page_size"),
            (query(Some(501), None, None, None), "page_size"),
            (query(None, Some(0), None, None), "page"),
            (query(None, None, Some("garbage!"), None), "cursor"),
            (query(None, None, None, Some("email.asc")), "sort"),
            (query(None, None, None, Some("name.up")), "sort"),
            (query(None, None, None, Some("name")), "sort"),
        ] {
            let err = q.validate(&fields).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::ValidationFailed);
            assert_eq!(err.errors[0].field, field, "{q:?}");
        }
        // The window's cursors lead to the neighbouring pages; a cursor
        // overrides `page`.
        let window = query(Some(10), Some(2), None, None)
            .validate(&fields)
            .unwrap()
            .window(25);
        let links = window.links();
        let next = query(Some(10), Some(1), links.next.as_deref(), None)
            .validate(&fields)
            .unwrap();
        assert_eq!(next.offset, 20);
        let next_window = next.window(25);
        assert!(next_window.links().next.is_none(), "the last page");
        let prev = query(Some(10), None, links.prev.as_deref(), None)
            .validate(&fields)
            .unwrap();
        assert_eq!(prev.offset, 0);
        assert!(prev.window(25).links().prev.is_none(), "the first page");
    }

    #[test]
    fn cursor_round_trip_and_tamper_evidence() {
        let codec = CursorCodec::new(b"k1".to_vec());
        let position = CursorPosition {
            created_at_ms: 1_700_000_000_123,
            id: "spc_01HQ".into(),
        };
        let cursor = codec.encode(&position);
        assert_eq!(codec.decode(&cursor).unwrap(), position);

        // Any edit of the payload or the tag is refused.
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        bytes[5] ^= 1;
        assert!(codec.decode(&URL_SAFE_NO_PAD.encode(&bytes)).is_err());
        // Another key's cursor is refused.
        assert!(CursorCodec::new(b"k2".to_vec()).decode(&cursor).is_err());
        for garbage in ["", "!!!", "abc", &"A".repeat(600)] {
            assert!(codec.decode(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn cursor_meta_only_links_when_more() {
        let codec = CursorCodec::new(b"k".to_vec());
        let page = codec.validate(&CursorQuery::default()).unwrap();
        let last = CursorPosition {
            created_at_ms: 1,
            id: "x".into(),
        };
        match page.meta(&codec, true, Some(&last)) {
            Meta::Cursor {
                next_cursor,
                has_more,
                ..
            } => {
                assert!(has_more);
                assert_eq!(codec.decode(&next_cursor.unwrap()).unwrap(), last);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            page.meta(&codec, false, Some(&last)),
            Meta::Cursor {
                next_cursor: None,
                has_more: false,
                ..
            }
        ));
    }
}
