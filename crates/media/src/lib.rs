//! The CPU side of spaces-service's content: what a file is, what it may be
//! called, and what its images become on upload and on delivery.
//!
//! Everything here is synchronous and pure: no database, no HTTP, no async.
//! Decoding and encoding are CPU-bound and take tens to hundreds of
//! milliseconds, so callers run them under `spawn_blocking`, behind a
//! semaphore that bounds how many run at once and a time budget of their own.
//! Memory stays bounded by [`Limits`]: an image's header is read and its pixel
//! count checked before any pixel buffer is allocated.
//!
//! - [`sniff`]: a file's type from its first bytes (a PNG named `.jpg` is a PNG).
//! - [`safe_filename`], [`safe_folder_path`]: names that may become storage paths.
//! - [`probe`]: an image's format and displayed size, from its header.
//! - [`process_upload`]: an upload's metadata stripped (losslessly when the
//!   format stays), or the image converted; with its size and blurhash.
//! - [`Transform`], [`negotiate`], [`render`]: Tuzzle's delivery transforms
//!   (`w`, `h`, `r`, `g`, `f`, `q`), with a space's [`Watermark`]; [`output`]
//!   tells what a render gives (format, size) without decoding.
//! - [`blurhash()`]: the placeholder string of `storage_meta.blur_hash`.
//!
//! Formats: JPEG, PNG and WebP are decoded, transformed and encoded (WebP
//! lossy through libwebp). Other types (GIF, AVIF, HEIC, …) are sniffed but
//! refused with [`MediaError::Unsupported`]: callers store and serve them as
//! they are.

mod blur;
mod codec;
mod metadata;
mod names;
mod probe;
mod render;
mod sniff;
mod transform;
mod upload;
mod watermark;

pub use blur::blurhash;
pub use codec::Format;
pub use names::{MAX_FOLDER_DEPTH, MAX_NAME_BYTES, NameError, safe_filename, safe_folder_path};
pub use probe::{ImageInfo, Limits, probe};
pub use render::{Output, Rendered, output, render};
pub use sniff::{Family, SNIFF_BYTES, Sniffed, sniff};
pub use transform::{
    Compass, Gravity, InvalidModifiers, MAX_DIMENSION, Resize, Transform, WEBP_MAX_DIMENSION,
    negotiate,
};
pub use upload::{Processed, UploadOptions, process_upload};
pub use watermark::Watermark;

/// Why an image could not be read, processed or written.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Not a JPEG, PNG or WebP image (the caller serves or stores it as is,
    /// or answers "File type not allowed.").
    #[error("not a JPEG, PNG or WebP image")]
    Unsupported,
    /// The header announces more pixels than [`Limits::max_pixels`]: refused
    /// before decoding (a decompression bomb, or simply too large).
    #[error("the image is {width}×{height} pixels, more than the {max_pixels} allowed")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// Decoding would need more memory than [`Limits::max_alloc`].
    #[error("decoding the image would need more memory than allowed")]
    MemoryLimit,
    /// The bytes are not a valid image of their format (truncated, corrupt).
    #[error("the image could not be decoded: {0}")]
    Malformed(String),
    /// The transform cannot be applied to this image (checked once its size
    /// is known, e.g. an explicit `f=webp` larger than WebP's delivery limit).
    #[error(transparent)]
    InvalidModifiers(#[from] InvalidModifiers),
    /// The encoder failed; a bug or a resource failure, never the client's.
    #[error("the image could not be encoded: {0}")]
    Encode(String),
}

impl From<image::ImageError> for MediaError {
    fn from(error: image::ImageError) -> Self {
        match error {
            image::ImageError::Limits(_) => MediaError::MemoryLimit,
            image::ImageError::Unsupported(e) => MediaError::Malformed(e.to_string()),
            image::ImageError::Encoding(e) => MediaError::Encode(e.to_string()),
            other => MediaError::Malformed(other.to_string()),
        }
    }
}
