//! Delivery: `GET` and `HEAD /cdn/{handle}/{name}`, Tuzzle's CDN, mounted
//! on the gateway as a public route (spaces-service decides who may read).
//!
//! A request goes: the path to a storage path (400 for a name that tries to
//! leave its space, 404 for what cannot exist); the file it names, active, in
//! its space (404, whoever asks: nothing is told about other workspaces'
//! files); who may read it ([`delivery::Deliverable::is_public`]: anyone;
//! otherwise a credential whose reach covers the space, or a valid signed
//! URL; 403 when neither, when the signature is wrong or expired, and for a
//! disabled space); the transform (422 with the parameters named); then
//! either the original, streamed from storage (byte ranges honoured), or a
//! variant ([`variants`]), streamed from storage when stored, else rendered
//! once and stored.
//!
//! Images (JPEG, PNG, WebP) are transformed by `w`, `h`, `r`, `g`, `f`, `q`;
//! without `f` the format follows `Accept` (WebP when accepted; `Vary:
//! Accept`). The space's watermark, when enabled, is laid over every image
//! it delivers, originals included ([`watermarks`]). Other files (and images
//! of other formats) are served as they are, transform parameters ignored, as
//! Tuzzle documents.
//!
//! Headers: a strong `ETag` per representation (the original's SHA-256; a
//! variant's derived from it and the variant's name, so it is known before
//! the variant is), `Last-Modified`, `If-None-Match`/`If-Modified-Since` →
//! 304 before any storage is read, `Range`/`If-Range` on originals (206, 416;
//! variants are sent whole, `Accept-Ranges: none`), `Cache-Control` (public
//! content `public, max-age={delivery.public_max_age_secs}`; a signed URL of
//! a cacheable file `public` until it expires; with a credential `private,
//! no-cache`; `authenticated` files `private, no-store`), `x-image-width`,
//! `x-image-height` (the original's, as Tuzzle documents) and `x-blurhash` on
//! images, `x-cache: HIT|MISS` on variants, `x-content-type-options: nosniff`
//! and a sandboxing `content-security-policy` (uploaded content never runs
//! as the platform's page). Errors are Tuzzle's CDN shape ([`CdnError`]).

pub mod cache;
pub mod conditional;
pub mod variants;
pub mod watermarks;

use crate::delivery::{self, Deliverable};
use crate::signed_urls::{self, Refusal};
use crate::storage::StorageError;
use crate::upload_configs::DeliveryType;
use crate::{SpacesState, access};
use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use bytes::Bytes;
use conditional::Ranged;
use futures_util::StreamExt;
use identity::Identity;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use utoipa::ToSchema;

/// Where the gateway mounts the CDN.
const MOUNT: &str = "/cdn";
/// How much of an original is read to learn its size when the database
/// does not know it.
const PROBE_BYTES: u64 = 64 * 1024;
/// Bumped when rendering changes what a variant name gives: new names, new
/// variants, new ETags.
const VARIANT_VERSION: &str = "v1";

/// Delivery's settings and machinery.
#[derive(Debug)]
pub struct Cdn {
    pub public_max_age: u64,
    pub max_source_bytes: u64,
    pub variants: variants::Variants,
    pub watermarks: watermarks::Watermarks,
    /// Files looked up and variant bytes, remembered between requests.
    pub cache: std::sync::Arc<cache::DeliveryCache>,
}

impl Cdn {
    pub fn new(config: &crate::config::SpacesConfig) -> anyhow::Result<Cdn> {
        Ok(Cdn {
            public_max_age: config.delivery.public_max_age_secs,
            max_source_bytes: config.delivery.transform_max_source_bytes,
            variants: variants::Variants::new(
                Duration::from_millis(config.delivery.transform_wait_ms),
                Duration::from_millis(config.delivery.transform_timeout_ms),
            ),
            watermarks: watermarks::Watermarks::new(&config.watermarks)?,
            cache: std::sync::Arc::new(cache::DeliveryCache::new(
                Duration::from_secs(config.delivery.cache_ttl_secs),
                config.delivery.variant_memory_bytes,
            )),
        })
    }
}

/// Tuzzle's CDN error: `{"error": {"code", "message", "type", "details"},
/// "request_id"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CdnErrorBody {
    pub error: CdnErrorDetail,
    /// The request's id (`x-request-id`).
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CdnErrorDetail {
    /// The HTTP status.
    pub code: u16,
    /// `Invalid modifiers`, `Forbidden`, `File not found`, `Server busy, try again later`, …
    pub message: String,
    /// `ValidationError`, `InvalidPathError`, `AuthorizationError`,
    /// `NotFoundError`, `RangeNotSatisfiableError`, `ServerBusyError`,
    /// `ServiceUnavailableError`, `TimeoutError`, `InternalError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What was wrong: for invalid modifiers, each parameter and why.
    pub details: BTreeMap<String, String>,
}

/// A CDN refusal or failure, answered in Tuzzle's CDN shape.
#[derive(Debug, Clone)]
pub struct CdnError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    details: BTreeMap<String, String>,
    headers: Vec<(&'static str, String)>,
}

impl CdnError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> CdnError {
        CdnError {
            status,
            kind,
            message: message.into(),
            details: BTreeMap::new(),
            headers: Vec::new(),
        }
    }

    fn detail(mut self, name: &str, value: impl Into<String>) -> CdnError {
        self.details.insert(name.to_owned(), value.into());
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> CdnError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn invalid_modifiers(invalid: &media::InvalidModifiers) -> CdnError {
        let mut error = CdnError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ValidationError",
            "Invalid modifiers",
        );
        for (field, message) in invalid.details() {
            error = error.detail(field, message.clone());
        }
        // Tuzzle also names them in a header.
        let listed = serde_json::to_string(&error.details).unwrap_or_default();
        error.header("x-tzzl-errors", listed)
    }

    pub(crate) fn too_large(reason: &str) -> CdnError {
        CdnError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ValidationError",
            "Invalid modifiers",
        )
        .detail(
            "source",
            format!("The image is too large to transform ({reason})."),
        )
    }

    pub(crate) fn undecodable(reason: &str) -> CdnError {
        CdnError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ValidationError",
            "Invalid modifiers",
        )
        .detail(
            "source",
            format!("The image could not be transformed ({reason})."),
        )
    }

    fn bad_path() -> CdnError {
        CdnError::new(StatusCode::BAD_REQUEST, "InvalidPathError", "Invalid path")
    }

    pub(crate) fn not_found() -> CdnError {
        CdnError::new(StatusCode::NOT_FOUND, "NotFoundError", "File not found")
    }

    fn forbidden(reason: &'static str, message: &'static str) -> CdnError {
        CdnError::new(StatusCode::FORBIDDEN, "AuthorizationError", "Forbidden")
            .detail("reason", reason)
            .detail("message", message)
    }

    fn unsatisfiable(size: u64) -> CdnError {
        CdnError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "RangeNotSatisfiableError",
            "Range not satisfiable",
        )
        .detail("size", size.to_string())
        .header("content-range", format!("bytes */{size}"))
    }

    pub(crate) fn busy() -> CdnError {
        CdnError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServerBusyError",
            "Server busy, try again later",
        )
        .header("retry-after", "1")
    }

    pub(crate) fn unavailable(message: &str) -> CdnError {
        CdnError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            message,
        )
        .header("retry-after", "1")
    }

    pub(crate) fn timeout() -> CdnError {
        CdnError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "TimeoutError",
            "The transformation took too long; try again later",
        )
        .header("retry-after", "1")
    }

    pub(crate) fn internal(reason: &str) -> CdnError {
        tracing::error!(%reason, "delivery failed");
        CdnError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal server error",
        )
    }

    /// The answer: JSON, never cached.
    pub fn response(&self) -> HttpResponse {
        let body = CdnErrorBody {
            error: CdnErrorDetail {
                code: self.status.as_u16(),
                message: self.message.clone(),
                kind: self.kind.to_owned(),
                details: self.details.clone(),
            },
            request_id: service_kit::request_id::current(),
        };
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        response.json(body)
    }
}

/// Failures of the store or the database, as the CDN words them.
impl From<service_kit::ApiError> for CdnError {
    fn from(e: service_kit::ApiError) -> CdnError {
        match e.status {
            StatusCode::NOT_FOUND => CdnError::not_found(),
            status if status.is_server_error() && status != StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::warn!(error = ?e, "delivery could not reach its backing");
                CdnError::unavailable("Service unavailable, try again later.")
            }
            _ => CdnError::internal(&format!("{e:?}")),
        }
    }
}

impl From<StorageError> for CdnError {
    fn from(e: StorageError) -> CdnError {
        service_kit::ApiError::from(e).into()
    }
}

/// Deliver a file
///
/// The file at `{handle}/{name}` (its `storage_path`), or a variant of it.
/// Public content (an `upload` file whose access control allows public
/// reading) is served to anyone; anything else needs a credential that
/// reaches the space (as for `GET /api/v1/files`, `spaces:read`) or a signed
/// URL (`POST /api/v1/files/{id}/signed-url`; `expires` and `signature`,
/// which cover every parameter). Images (JPEG, PNG, WebP) are transformed by
/// `w`, `h`, `r`, `g`, `f`, `q` (without `f`, WebP when `Accept` lists it),
/// each variant rendered once and stored, and watermarked when the space
/// asks; other files are served as they are. Errors are Tuzzle's CDN shape
/// `{error: {code, message, type, details}, request_id}`; only the refusals
/// of the gateway and of the identity check come in the API's shape.
#[utoipa::path(
    get,
    path = "/cdn/{handle}/{name}",
    operation_id = "deliver_file",
    tag = "delivery",
    params(
        ("handle" = String, Path, description = "The space's handle."),
        ("name" = String, Path, description = "The file's name (its `storage_path` is `{handle}/{name}`)."),
        ("w" = Option<u32>, Query, description = "Width, 1 to 4096 pixels."),
        ("h" = Option<u32>, Query, description = "Height, 1 to 4096 pixels."),
        ("r" = Option<String>, Query, description = "Resize mode: `scale`, `fit` (default), `fill`, `crop` (needs `w` and `h`), `thumb`."),
        ("g" = Option<String>, Query, description = "Gravity: `center` (default), `north`, `northeast`, … (or `n`, `ne`, …), `auto` (also for `face`, `faces`, `eyes`)."),
        ("f" = Option<String>, Query, description = "Format: `jpeg`, `png`, `webp` (at most 2000 pixels a side). Without it: WebP when `Accept` lists `image/webp`, else the original's."),
        ("q" = Option<u8>, Query, description = "Quality, 1 to 100; by default from the output's size (90 up to 1000 pixels, 85 up to 2500, 80 beyond)."),
        ("expires" = Option<i64>, Query, description = "Signed URLs: Unix seconds."),
        ("signature" = Option<String>, Query, description = "Signed URLs: HMAC-SHA256, hex, over the path and every other parameter."),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds: 304 when current."),
        ("Range" = Option<String>, Header, description = "One byte range (`bytes=0-1023`, `bytes=-500`), honoured on originals."),
        ("Accept" = Option<String>, Header, description = "Chooses the format when `f` is absent."),
    ),
    security((), ("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "The file or variant, streamed.", content_type = "application/octet-stream", body = String,
            headers(
                ("etag" = String, description = "Strong, per representation."),
                ("cache-control" = String, description = "`public, max-age=…` for public content; `private` otherwise."),
                ("x-image-width" = u32, description = "Images: the original's width."),
                ("x-image-height" = u32, description = "Images: the original's height."),
                ("x-blurhash" = String, description = "Images: the original's blurhash."),
                ("x-cache" = String, description = "Variants: `HIT` (stored) or `MISS` (rendered for this request)."),
            )),
        (status = 206, description = "The range asked for (`Content-Range`).", content_type = "application/octet-stream", body = String),
        (status = 304, description = "The client's copy is current."),
        (status = 400, description = "A name that tries to leave its space (`..`, `/`, control characters).", body = CdnErrorBody),
        (status = 403, description = "Not public, and neither a credential for the space nor a valid signed URL (`details.reason`: `unsigned`, `expired`, `invalid_signature`, `credential`); or a disabled space.", body = CdnErrorBody),
        (status = 404, description = "No such file (in this space, or at all).", body = CdnErrorBody),
        (status = 416, description = "The range starts past the end.", body = CdnErrorBody),
        (status = 422, description = "`Invalid modifiers`: `details` names each bad parameter (also in `x-tzzl-errors`), or the image that cannot be transformed (`details.source`).", body = CdnErrorBody),
        (status = 503, description = "No transform slot free in time (`Server busy, try again later`), the watermark or storage unavailable; `Retry-After`.", body = CdnErrorBody),
        (status = 504, description = "The variant took longer than allowed; it is still made and stored: retry (`Retry-After`).", body = CdnErrorBody),
    )
)]
pub async fn get(
    req: HttpRequest,
    identity: Identity,
    state: web::Data<SpacesState>,
) -> HttpResponse {
    deliver(&req, &identity, &state)
        .await
        .unwrap_or_else(|e| e.response())
}

/// Deliver a file's headers
///
/// `GET`'s answer without its body (a variant not yet stored is rendered
/// to know its length).
#[utoipa::path(
    head,
    path = "/cdn/{handle}/{name}",
    operation_id = "deliver_file_head",
    tag = "delivery",
    params(
        ("handle" = String, Path, description = "The space's handle."),
        ("name" = String, Path, description = "The file's name."),
    ),
    security((), ("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "The headers `GET` would send."),
        (status = 206, description = "The headers of the range asked for."),
        (status = 304, description = "The client's copy is current."),
        (status = 400, description = "As for `GET`.", body = CdnErrorBody),
        (status = 403, description = "As for `GET`.", body = CdnErrorBody),
        (status = 404, description = "As for `GET`.", body = CdnErrorBody),
        (status = 416, description = "As for `GET`.", body = CdnErrorBody),
        (status = 422, description = "As for `GET`.", body = CdnErrorBody),
        (status = 503, description = "As for `GET`.", body = CdnErrorBody),
        (status = 504, description = "As for `GET`.", body = CdnErrorBody),
    )
)]
pub async fn head(
    req: HttpRequest,
    identity: Identity,
    state: web::Data<SpacesState>,
) -> HttpResponse {
    get(req, identity, state).await
}

/// How the request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Public,
    /// A signed URL, valid until these Unix seconds.
    Signed(i64),
    Credential,
}

async fn deliver(
    req: &HttpRequest,
    identity: &Identity,
    state: &SpacesState,
) -> Result<HttpResponse, CdnError> {
    let storage_path = storage_path(req.path())?;
    let query = req.query_string();
    let transform = media::Transform::parse(form_urlencoded::parse(query.as_bytes()));
    let found = match state.cdn.cache.deliverable(&storage_path) {
        Some(found) => found,
        None => {
            let looked_up = storage_path.clone();
            let found = state
                .db
                .run(move |conn| delivery::find(conn, &looked_up))
                .await
                .map_err(service_kit::ApiError::from)?
                .map(std::sync::Arc::new)
                .ok_or_else(CdnError::not_found)?;
            state.cdn.cache.remember(&storage_path, found.clone());
            found
        }
    };
    let found = &*found;
    let grant = authorise(state, identity, found, &storage_path, query).await?;
    let transform = transform.map_err(|e| CdnError::invalid_modifiers(&e))?;
    let reply = Reply::new(req, state, found, grant);
    let Some(source) = image_source(state, found).await else {
        // Not an image this service transforms: as it is.
        return reply.original(None).await;
    };
    let watermark = found.watermark();
    let untouched = transform.is_identity() && watermark.is_none();
    if found.file.size as u64 > state.cdn.max_source_bytes {
        return match untouched {
            true => reply.original(Some(source)).await,
            false => Err(CdnError::too_large("the original is larger than allowed")),
        };
    }
    let negotiated = transform.clone().negotiated(accept(req), source.format);
    let planned =
        media::output(source, &negotiated).map_err(|e| CdnError::invalid_modifiers(&e))?;
    let reply = reply.varying_by_accept(transform.format().is_none());
    if untouched && planned.format == source.format {
        return reply.original(Some(source)).await;
    }
    let watermark = match watermark {
        Some(settings) => Some(
            state
                .cdn
                .watermarks
                .get(&settings, &state.image_work)
                .await?,
        ),
        None => None,
    };
    let name = match &watermark {
        Some(mark) => format!("{}_m{}", negotiated.variant_key(), mark.fingerprint),
        None => negotiated.variant_key(),
    };
    let job = variants::Job {
        key: found.variant_key(&name),
        source: found.object_key().to_owned(),
        file_id: found.file.id.clone(),
        transform: negotiated,
        watermark,
    };
    reply.variant(source, planned, &name, job).await
}

/// The storage path a request names, or why it names none: 400 for a name
/// that tries to leave its space (as Tuzzle answers path traversal), 404 for
/// a handle that cannot exist.
fn storage_path(request_path: &str) -> Result<String, CdnError> {
    if let Some(path) = delivery::storage_path_of(request_path, MOUNT) {
        return Ok(path);
    }
    let handle = request_path
        .strip_prefix(MOUNT)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    if crate::handles::is_handle(handle) {
        Err(CdnError::bad_path())
    } else {
        Err(CdnError::not_found())
    }
}

/// Who may read the file: anyone when it is public; else a credential whose
/// reach covers its space (another workspace's credential learns nothing:
/// 404), or a valid signed URL (403 when missing, altered or expired).
async fn authorise(
    state: &SpacesState,
    identity: &Identity,
    found: &Deliverable,
    storage_path: &str,
    query: &str,
) -> Result<Grant, CdnError> {
    if !found.space.enabled {
        return Err(CdnError::forbidden(
            "space_disabled",
            "The space is disabled.",
        ));
    }
    if found.is_public() {
        return Ok(Grant::Public);
    }
    let signed = form_urlencoded::parse(query.as_bytes())
        .any(|(name, _)| name == "signature" || name == "expires");
    if !identity.is_anonymous() {
        match access::readable(state, identity).await {
            Ok(reach) if delivery::covers(&reach, found) => return Ok(Grant::Credential),
            // Out of reach: as if it did not exist, unless a signature may
            // still let it in.
            Ok(_) if !signed => return Err(CdnError::not_found()),
            Err(_) if !signed => {
                return Err(CdnError::forbidden(
                    "credential",
                    "The credential may not read this space.",
                ));
            }
            _ => {}
        }
    }
    if !signed {
        return Err(CdnError::forbidden(
            "unsigned",
            "This file needs a signed URL or a credential for its space.",
        ));
    }
    match state.delivery.verify(storage_path, query) {
        Ok(params) => {
            let expires = signed_urls::param(&params, "expires")
                .and_then(|e| e.parse().ok())
                .unwrap_or_default();
            Ok(Grant::Signed(expires))
        }
        Err(Refusal::Expired) => Err(CdnError::forbidden(
            "expired",
            "The signed URL has expired.",
        )),
        Err(Refusal::Invalid | Refusal::Unsigned) => Err(CdnError::forbidden(
            "invalid_signature",
            "The signature does not match the URL.",
        )),
    }
}

/// The format and displayed size of an image this service transforms
/// (JPEG, PNG, WebP); `None` for anything else. The size comes from the
/// database, or from the original's header when the database lacks it.
async fn image_source(state: &SpacesState, found: &Deliverable) -> Option<media::ImageInfo> {
    let file = &found.file;
    if file.resource_type != "image" {
        return None;
    }
    let format = media::Format::parse(file.mime_type.strip_prefix("image/")?)?;
    if let (Some(width), Some(height)) = (file.width, file.height)
        && width > 0
        && height > 0
    {
        return Some(media::ImageInfo {
            format,
            width: width as u32,
            height: height as u32,
        });
    }
    let head = state
        .storage
        .read_head(found.object_key(), PROBE_BYTES)
        .await
        .ok()?;
    media::probe(&head)
        .ok()
        .filter(|info| info.format == format)
}

fn accept(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

/// What every answer about one file shares, and how to make them.
struct Reply<'a> {
    req: &'a HttpRequest,
    state: &'a SpacesState,
    found: &'a Deliverable,
    grant: Grant,
    vary_accept: bool,
}

impl<'a> Reply<'a> {
    fn new(
        req: &'a HttpRequest,
        state: &'a SpacesState,
        found: &'a Deliverable,
        grant: Grant,
    ) -> Reply<'a> {
        Reply {
            req,
            state,
            found,
            grant,
            vary_accept: false,
        }
    }

    fn varying_by_accept(mut self, vary: bool) -> Reply<'a> {
        self.vary_accept = vary;
        self
    }

    fn head_only(&self) -> bool {
        self.req.method() == Method::HEAD
    }

    fn modified(&self) -> SystemTime {
        let at = self.found.file.created_at.and_utc().timestamp().max(0) as u64;
        SystemTime::UNIX_EPOCH + Duration::from_secs(at)
    }

    fn cache_control(&self) -> String {
        let public_max_age = self.state.cdn.public_max_age;
        match self.grant {
            Grant::Public => format!("public, max-age={public_max_age}"),
            _ if self.found.access_type() == DeliveryType::Authenticated => {
                "private, no-store".into()
            }
            // Tuzzle: a private file is public once signed, until the
            // signature expires.
            Grant::Signed(expires) if self.found.cacheable() => {
                let left = (expires - chrono::Utc::now().timestamp()).max(0) as u64;
                format!("public, max-age={}", left.min(public_max_age))
            }
            Grant::Signed(_) => "private, no-cache".into(),
            Grant::Credential => "private, no-cache".into(),
        }
    }

    /// The headers of every answer about this representation, 304 included.
    fn headers(&self, etag: &str, response: &mut HttpResponseBuilder) {
        response
            .insert_header((header::ETAG, etag))
            .insert_header((
                header::LAST_MODIFIED,
                conditional::http_date(self.modified()),
            ))
            .insert_header((header::CACHE_CONTROL, self.cache_control()));
        if self.vary_accept {
            response.insert_header((header::VARY, "Accept"));
        }
    }

    /// The headers of a 200 or 206 about an image.
    fn content_headers(
        &self,
        content_type: &str,
        image: Option<media::ImageInfo>,
        response: &mut HttpResponseBuilder,
    ) {
        response
            .insert_header((header::CONTENT_TYPE, content_type))
            .insert_header(("x-content-type-options", "nosniff"))
            .insert_header(("content-security-policy", "default-src 'none'; sandbox"));
        if let Some(info) = image {
            response
                .insert_header(("x-image-width", info.width.to_string()))
                .insert_header(("x-image-height", info.height.to_string()));
            if let Some(hash) = &self.found.file.blur_hash {
                response.insert_header(("x-blurhash", hash.as_str()));
            }
        }
    }

    fn not_modified(&self, etag: &str) -> HttpResponse {
        let mut response = HttpResponse::NotModified();
        self.headers(etag, &mut response);
        response.finish()
    }

    /// The original, streamed from storage, a range of it when asked.
    async fn original(self, image: Option<media::ImageInfo>) -> Result<HttpResponse, CdnError> {
        let file = &self.found.file;
        let etag = format!(
            "\"{}\"",
            file.sha256
                .clone()
                .unwrap_or_else(|| tag_of(&[&file.id, &file.size.to_string()]))
        );
        if conditional::not_modified(self.req, &etag, self.modified()) {
            return Ok(self.not_modified(&etag));
        }
        let size = file.size.max(0) as u64;
        let range = match conditional::requested(self.req, &etag, self.modified(), size) {
            Ranged::Whole => None,
            Ranged::Part(range) => Some(range),
            Ranged::Unsatisfiable => return Err(CdnError::unsatisfiable(size)),
        };
        let mut response = match &range {
            Some(r) => {
                let mut partial = HttpResponse::PartialContent();
                partial.insert_header((
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{size}", r.start, r.end - 1),
                ));
                partial
            }
            None => HttpResponse::Ok(),
        };
        self.headers(&etag, &mut response);
        self.content_headers(&file.mime_type, image, &mut response);
        response.insert_header((header::ACCEPT_RANGES, "bytes"));
        let length = range.as_ref().map_or(size, |r| r.end - r.start);
        if self.head_only() {
            return Ok(self.sized(response, length, None));
        }
        let object = self
            .state
            .storage
            .get(self.found.object_key(), range)
            .await?;
        Ok(self.sized(response, length, Some(object.bytes)))
    }

    /// A variant: from storage when stored, else rendered (once) and stored.
    async fn variant(
        self,
        source: media::ImageInfo,
        planned: media::Output,
        name: &str,
        job: variants::Job,
    ) -> Result<HttpResponse, CdnError> {
        let file = &self.found.file;
        let etag = format!(
            "\"{}\"",
            tag_of(&[
                VARIANT_VERSION,
                file.sha256.as_deref().unwrap_or(&file.id),
                name
            ])
        );
        if conditional::not_modified(self.req, &etag, self.modified()) {
            return Ok(self.not_modified(&etag));
        }
        let metrics = &self.state.cdn.variants.metrics;
        let mut response = HttpResponse::Ok();
        self.headers(&etag, &mut response);
        self.content_headers(planned.format.mime(), Some(source), &mut response);
        response.insert_header((header::ACCEPT_RANGES, "none"));
        let cache = &self.state.cdn.cache;
        if let Some(bytes) = cache.variant(&job.key) {
            metrics.request(true);
            response.insert_header(("x-cache", "HIT"));
            return Ok(self.whole(response, bytes));
        }
        let storage = &self.state.storage;
        let stored = if self.head_only() {
            storage.head(&job.key).await.map(|info| (info.size, None))
        } else {
            storage
                .get(&job.key, None)
                .await
                .map(|object| (object.info.size, Some(object.bytes)))
        };
        let (length, body) = match stored {
            Ok((length, Some(body))) if cache.keeps_variant(length) => {
                metrics.request(true);
                response.insert_header(("x-cache", "HIT"));
                let bytes = collect(body, length).await?;
                cache.remember_variant(&job.key, bytes.clone());
                return Ok(self.whole(response, bytes));
            }
            Ok(found) => {
                metrics.request(true);
                response.insert_header(("x-cache", "HIT"));
                found
            }
            Err(StorageError::NotFound) => {
                metrics.request(false);
                response.insert_header(("x-cache", "MISS"));
                let key = job.key.clone();
                let tools = variants::Tools {
                    storage: storage.clone(),
                    image_work: self.state.image_work.clone(),
                    db: self.state.db.clone(),
                };
                match self.state.cdn.variants.obtain(&tools, job).await? {
                    variants::Ready::Rendered(bytes) => {
                        cache.remember_variant(&key, bytes.clone());
                        return Ok(self.whole(response, bytes));
                    }
                    variants::Ready::Stored => {
                        let object = storage.get(&key, None).await?;
                        (object.info.size, Some(object.bytes))
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok(self.sized(response, length, body))
    }

    /// A 200 with `bytes` as its body.
    fn whole(&self, response: HttpResponseBuilder, bytes: Bytes) -> HttpResponse {
        let length = bytes.len() as u64;
        let body = futures_util::stream::once(async move { Ok(bytes) }).boxed();
        self.sized(response, length, Some(body))
    }

    /// `response` with a body of `length` bytes: `body`, or none for `HEAD`
    /// (its `Content-Length` still the `GET`'s).
    fn sized(
        &self,
        mut response: HttpResponseBuilder,
        length: u64,
        body: Option<StoredBytes>,
    ) -> HttpResponse {
        let body = match body {
            Some(body) if !self.head_only() => body,
            _ => futures_util::stream::empty().boxed(),
        };
        response.body(SizedStream::new(length, body))
    }
}

/// An object's bytes as storage streams them.
type StoredBytes = futures_util::stream::BoxStream<'static, Result<Bytes, StorageError>>;

/// A stored object's bytes, `length` of them, read whole.
async fn collect(mut body: StoredBytes, length: u64) -> Result<Bytes, StorageError> {
    let mut whole = bytes::BytesMut::with_capacity(length as usize);
    while let Some(chunk) = body.next().await {
        whole.extend_from_slice(&chunk?);
    }
    Ok(whole.freeze())
}

/// A strong tag from its parts: 32 hex digits.
fn tag_of(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    crate::storage::hex(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_tuzzles_cdn_shape() {
        let invalid = media::Transform::parse([("w", "0"), ("r", "nope")]).unwrap_err();
        let error = CdnError::invalid_modifiers(&invalid);
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.kind, "ValidationError");
        assert_eq!(error.message, "Invalid modifiers");
        assert!(error.details.contains_key("w") && error.details.contains_key("r"));
        assert!(
            error
                .headers
                .iter()
                .any(|(name, _)| *name == "x-tzzl-errors")
        );
        let busy = CdnError::busy();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(busy.headers.contains(&("retry-after", "1".to_owned())));
    }

    #[test]
    fn request_paths_are_refused_by_what_they_attempt() {
        assert_eq!(
            storage_path("/cdn/a1b2c3/image-01HQ").unwrap(),
            "a1b2c3/image-01HQ"
        );
        for attack in [
            "/cdn/a1b2c3/..",
            "/cdn/a1b2c3/%2e%2e",
            "/cdn/a1b2c3/a%2Fb",
            "/cdn/a1b2c3/%00",
        ] {
            assert_eq!(
                storage_path(attack).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{attack}"
            );
        }
        assert_eq!(
            storage_path("/cdn/NOT-A-HANDLE/x").unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn tags_are_stable_and_distinct() {
        assert_eq!(tag_of(&["a", "b"]), tag_of(&["a", "b"]));
        assert_ne!(tag_of(&["a", "b"]), tag_of(&["ab", ""]));
        assert_eq!(tag_of(&["x"]).len(), 32);
    }
}
