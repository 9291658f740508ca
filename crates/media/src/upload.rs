//! Upload-time processing: metadata removal and format conversion.

use crate::codec::{self, default_quality};
use crate::probe::{Header, Limits};
use crate::{Format, MediaError, blur, metadata};

/// What an upload config's `transformations` ask of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadOptions {
    /// `strip_metadata`: remove Exif (GPS included), XMP, IPTC, comments and
    /// text chunks. Without a conversion this is lossless: the image data is
    /// kept byte for byte, and a rotated photo keeps only its orientation.
    pub strip_metadata: bool,
    /// `upload_format`: convert to this format (re-encoding drops all
    /// metadata and applies the orientation to the pixels).
    pub format: Option<Format>,
    /// `upload_quality` (1–100) for JPEG and WebP; asking for it re-encodes
    /// even without a format change. Ignored for PNG. When converting without
    /// it, the quality follows the image size (90 up to 1000 px, 85 up to
    /// 2500, 80 beyond).
    pub quality: Option<u8>,
}

/// An upload after processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The bytes to store, or `None` when the upload stands as it was sent
    /// (nothing asked, or nothing to change), so it need not be rewritten.
    pub bytes: Option<Vec<u8>>,
    pub format: Format,
    /// As displayed (orientation applied).
    pub width: u32,
    pub height: u32,
    /// For `storage_meta.blur_hash`.
    pub blur_hash: String,
}

impl Processed {
    pub fn mime(&self) -> &'static str {
        self.format.mime()
    }
}

/// Processes an uploaded image (JPEG, PNG or WebP) as its upload config asks,
/// and reports its size and blurhash. The header is checked against `limits`
/// before decoding; the image is always decoded (at 1/8 scale for a JPEG
/// kept as it is) so that a corrupt upload is refused here.
pub fn process_upload(
    bytes: &[u8],
    options: &UploadOptions,
    limits: &Limits,
) -> Result<Processed, MediaError> {
    let header = Header::admitted(bytes, limits)?;
    let info = header.info();
    let format = options.format.unwrap_or(info.format);
    let reencode = format != info.format || (options.quality.is_some() && format != Format::Png);
    if reencode {
        let image = codec::decode(bytes, &header, limits, None)?;
        let quality = options
            .quality
            .unwrap_or_else(|| default_quality(image.width(), image.height()));
        return Ok(Processed {
            bytes: Some(codec::encode(&image, format, quality)?),
            format,
            width: image.width(),
            height: image.height(),
            blur_hash: blur::of_image(&image),
        });
    }
    let blur_hash = blur::blurhash(bytes, limits)?;
    let bytes = if options.strip_metadata {
        Some(metadata::strip(bytes, &header)?)
    } else {
        None
    };
    Ok(Processed {
        bytes,
        format,
        width: info.width,
        height: info.height,
        blur_hash,
    })
}
