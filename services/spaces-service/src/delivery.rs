//! What serving files needs, in one place: their URLs (`{delivery.cdn_url}/
//! {storage_path}`), signed delivery URLs (Tuzzle's `expires` and
//! `signature`, HMAC-SHA256 under a key of their own), and, for the
//! `/cdn/{handle}/{name}` handler, the file a path names with the access
//! control in force for it ([`find`]), where its bytes are
//! ([`Deliverable::object_key`]) and where its derived variants go
//! ([`Deliverable::variant_key`]).
//!
//! A CDN handler does, in order: [`storage_path_of`] on the request path,
//! [`find`] (404 when `None`), then unless [`Deliverable::is_public`] either
//! [`Delivery::verify`] of the query (403 when refused) or a credential whose
//! reach [`covers`] the space; then `SpacesState::storage.get(object_key, range)`.
//!
//! Signatures cover the storage path (`/{handle}/{name}`, decoded) and every
//! query parameter, sorted: they do not depend on where the CDN is mounted
//! (`/cdn` through the gateway, the root of a CDN host).

use crate::access::Reach;
use crate::access_control::{self, EffectiveAccess};
use crate::config::DeliveryConfig;
use crate::files::FileRow;
use crate::schema::{files, spaces};
use crate::secrets::Keys;
use crate::settings::{AccessControl, Security};
use crate::signed_urls::{self, Refusal};
use crate::spaces::SpaceRow;
use crate::upload_configs::DeliveryType;
use diesel::prelude::*;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use store::{DbConnection, StoreError};

/// Characters escaped in a path segment of a delivery URL.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

/// Delivery URLs, plain and signed.
#[derive(Clone)]
pub struct Delivery {
    cdn_url: String,
    key: [u8; 32],
    default_ttl: u64,
    max_ttl: u64,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delivery({})", self.cdn_url)
    }
}

/// A signed delivery URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    pub url: String,
    /// Unix seconds.
    pub expires: i64,
}

impl Delivery {
    pub fn new(config: &DeliveryConfig, keys: &Keys) -> Delivery {
        Delivery {
            cdn_url: config.cdn_url.clone(),
            key: keys.delivery_urls,
            default_ttl: config.signed_url_ttl_secs,
            max_ttl: config.signed_url_max_ttl_secs,
        }
    }

    /// The longest lifetime a signed URL may be given, in seconds.
    pub fn max_ttl(&self) -> u64 {
        self.max_ttl
    }

    /// The file's URL: `{cdn_url}/{storage_path}`, each segment escaped.
    pub fn url(&self, storage_path: &str) -> String {
        let encoded: Vec<String> = storage_path
            .split('/')
            .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
            .collect();
        format!("{}/{}", self.cdn_url, encoded.join("/"))
    }

    /// A URL that serves the file with `params` (transformations, which the
    /// signature covers) until now + `ttl` seconds (default
    /// `delivery.signed_url_ttl_secs`; at most `delivery.signed_url_max_ttl_secs`).
    pub fn signed_url(
        &self,
        storage_path: &str,
        params: &[(String, String)],
        ttl: Option<u64>,
    ) -> SignedUrl {
        let ttl = ttl.unwrap_or(self.default_ttl).clamp(1, self.max_ttl);
        let expires = chrono::Utc::now().timestamp() + ttl as i64;
        let query = signed_urls::sign(&self.key, &signed_path(storage_path), params, expires);
        SignedUrl {
            url: format!("{}?{query}", self.url(storage_path)),
            expires,
        }
    }

    /// Checks a request's raw query string for the file at `storage_path`
    /// (decoded, as [`storage_path_of`] gives it); returns the parameters
    /// it signs (transformations, and `expires`).
    pub fn verify(
        &self,
        storage_path: &str,
        query: &str,
    ) -> Result<Vec<(String, String)>, Refusal> {
        signed_urls::verify(
            &self.key,
            &signed_path(storage_path),
            query,
            chrono::Utc::now().timestamp(),
        )
    }
}

fn signed_path(storage_path: &str) -> String {
    format!("/{storage_path}")
}

/// The storage path (`{handle}/{name}`) a CDN request path names, decoded:
/// `/cdn/a1b2c3/image-01HQ…` (or `/a1b2c3/…` with `mount = ""`) →
/// `a1b2c3/image-01HQ…`. `None` for anything else (no handle, no name, a
/// nested path, dot segments, control characters).
pub fn storage_path_of(request_path: &str, mount: &str) -> Option<String> {
    let rest = request_path.strip_prefix(mount)?.strip_prefix('/')?;
    let (handle, name) = rest.split_once('/')?;
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()?;
    let sound = crate::handles::is_handle(handle)
        && !name.is_empty()
        && !name.contains(['/', '\\'])
        && name != "."
        && name != ".."
        && !name.chars().any(char::is_control);
    sound.then(|| format!("{handle}/{name}"))
}

/// A file that can be served: active, in a space that exists.
#[derive(Debug, Clone)]
pub struct Deliverable {
    pub file: FileRow,
    pub space: SpaceRow,
    /// In force for the file (file → folder → space).
    pub access: EffectiveAccess,
}

impl Deliverable {
    /// Where its bytes are.
    pub fn object_key(&self) -> &str {
        &self.file.object_key
    }

    /// Where a variant of it (a transform's output, named by a digest of the
    /// normalised transform) is stored: beside the original, under the
    /// space's prefix, removed with the file and with the space.
    pub fn variant_key(&self, digest: &str) -> String {
        variant_key(&self.space.handle, &self.file.id, digest)
    }

    /// Its upload config's delivery type (Tuzzle's `type`).
    pub fn access_type(&self) -> DeliveryType {
        DeliveryType::parse(&self.file.access_type).unwrap_or(DeliveryType::Private)
    }

    /// Anyone may read it: a public (`upload`) file whose access control
    /// allows public reading. Anything else needs a signed URL or a
    /// credential for the space.
    pub fn is_public(&self) -> bool {
        self.access_type() == DeliveryType::Upload && self.access.is_public()
    }

    /// Shared caches may keep it (public content; `private` files once
    /// signed); `authenticated` files are never cached.
    pub fn cacheable(&self) -> bool {
        self.access_type() != DeliveryType::Authenticated && self.access.is_public()
    }

    /// The space's watermark, when enabled.
    pub fn watermark(&self) -> Option<crate::settings::Watermark> {
        let watermark = Security::stored(&self.space.security).watermark;
        watermark.enabled.then_some(watermark)
    }
}

/// `{handle}/_variants/{file id}/{digest}`: originals are `{handle}/fil_…`,
/// so variants cannot collide with them.
pub fn variant_key(handle: &str, file_id: &str, digest: &str) -> String {
    format!("{}/{file_id}/{digest}", variants_prefix(handle))
}

pub(crate) fn variants_prefix(handle: &str) -> String {
    format!("{handle}/_variants")
}

/// Whether a credential's reach covers the file's space.
pub fn covers(reach: &Reach, deliverable: &Deliverable) -> bool {
    reach.covers(&deliverable.space.workspace_id, &deliverable.space.id)
}

/// The active file at `storage_path` (`{handle}/{name}`), with its space and
/// the access control in force; `None` when there is none.
pub fn find(
    conn: &mut DbConnection,
    storage_path: &str,
) -> Result<Option<Deliverable>, StoreError> {
    let Some((file, space)) = files::table
        .inner_join(spaces::table.on(spaces::id.eq(files::space_id)))
        .filter(files::storage_path.eq(storage_path))
        .filter(files::status.eq("active"))
        .select((FileRow::as_select(), SpaceRow::as_select()))
        .first::<(FileRow, SpaceRow)>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let access = effective_access(conn, &file, &space)?;
    Ok(Some(Deliverable {
        file,
        space,
        access,
    }))
}

/// The access control in force for `file` (its own, its folders', its
/// space's).
pub(crate) fn effective_access(
    conn: &mut DbConnection,
    file: &FileRow,
    space: &SpaceRow,
) -> Result<EffectiveAccess, StoreError> {
    let chain = match &file.folder_id {
        Some(folder) => {
            let path: Option<String> = crate::schema::folders::table
                .find(folder)
                .select(crate::schema::folders::path)
                .first(conn)
                .optional()?;
            match path {
                Some(path) => crate::folders::chain(conn, &space.id, &path)?,
                None => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    Ok(access_control::resolve(
        access_control::parse(file.access_control.as_deref()).as_ref(),
        &chain,
        &space.id,
        &AccessControl::stored(&space.access_control),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            cdn_url: "http://127.0.0.1:8080/cdn".into(),
            key: [3; 32],
            default_ttl: 3600,
            max_ttl: 7200,
        }
    }

    #[test]
    fn urls_escape_names_and_signatures_cover_the_storage_path() {
        let d = delivery();
        assert_eq!(
            d.url("a1b2c3/my photo#1.jpg"),
            "http://127.0.0.1:8080/cdn/a1b2c3/my%20photo%231.jpg"
        );
        let signed = d.signed_url(
            "a1b2c3/my photo#1.jpg",
            &[("w".into(), "400".into())],
            Some(999_999),
        );
        assert!(signed.expires - chrono::Utc::now().timestamp() <= 7200);
        let (path, query) = signed.url.split_once('?').unwrap();
        let storage_path =
            storage_path_of(path.strip_prefix("http://127.0.0.1:8080").unwrap(), "/cdn").unwrap();
        assert_eq!(storage_path, "a1b2c3/my photo#1.jpg");
        let params = d.verify(&storage_path, query).unwrap();
        assert_eq!(signed_urls::param(&params, "w"), Some("400"));
        assert_eq!(d.verify("a1b2c3/other.jpg", query), Err(Refusal::Invalid));
        assert_eq!(
            d.verify(&storage_path, &query.replace("w=400", "w=800")),
            Err(Refusal::Invalid)
        );
    }

    #[test]
    fn request_paths() {
        assert_eq!(
            storage_path_of("/cdn/a1b2c3/image-01HQ", "/cdn").as_deref(),
            Some("a1b2c3/image-01HQ")
        );
        assert_eq!(
            storage_path_of("/a1b2c3/x%20y.png", "").as_deref(),
            Some("a1b2c3/x y.png")
        );
        for bad in [
            "/cdn/a1b2c3",
            "/cdn/a1b2c3/",
            "/cdn/ABCDEF/x",
            "/cdn/a1b2c3/a/b",
            "/cdn/a1b2c3/a%2Fb",
            "/cdn/a1b2c3/..",
            "/cdn/a1b2c3/%00",
            "/other/a1b2c3/x",
        ] {
            assert_eq!(storage_path_of(bad, "/cdn"), None, "{bad}");
        }
        assert_eq!(
            variant_key("a1b2c3", "fil_1", "abc"),
            "a1b2c3/_variants/fil_1/abc"
        );
    }
}
