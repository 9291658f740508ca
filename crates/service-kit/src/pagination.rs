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
