//! Reading an image's header, and the limits checked before any decoding.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{ImageDecoder, ImageReader};

use crate::{Format, MediaError};

/// Bounds on the images this crate decodes.
///
/// Decoding needs about 3 bytes per pixel (4 with transparency), plus the
/// output; a JPEG rendered much smaller than itself is decoded at 1/2, 1/4 or
/// 1/8 of its size and needs a fraction of that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most pixels (width × height, as the header states them) an image
    /// may have; larger ones are refused before a single pixel is decoded.
    pub max_pixels: u64,
    /// The most bytes a decoder may allocate for one image (passed to the
    /// decoders, which refuse to go beyond it).
    pub max_alloc: u64,
}

impl Default for Limits {
    /// 50 megapixels (the largest phone cameras), 256 MiB per decode.
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            max_alloc: 256 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Refuses an image whose header announces more than
    /// [`max_pixels`](Limits::max_pixels).
    pub fn check(&self, info: &ImageInfo) -> Result<(), MediaError> {
        let pixels = u64::from(info.width) * u64::from(info.height);
        if pixels > self.max_pixels {
            return Err(MediaError::TooManyPixels {
                width: info.width,
                height: info.height,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }

    /// The limits handed to `image`'s decoders.
    pub(crate) fn for_decoder(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(self.max_alloc);
        limits
    }
}

/// What an image's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: Format,
    /// As displayed: after the rotation its Exif orientation asks for (a
    /// portrait photo stored sideways reports its portrait width).
    pub width: u32,
    pub height: u32,
}

/// Reads an image's format and displayed size from its header, without
/// decoding pixels (and so whatever size it claims). Check the result with
/// [`Limits::check`] before doing anything costly; every decoding function of
/// this crate does so itself.
///
/// `bytes` may be just the beginning of the file, as long as it holds the
/// whole header: for a JPEG everything up to its first scan, Exif included
/// (the first 64 KiB nearly always do).
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, MediaError> {
    Ok(Header::read(bytes)?.info())
}

/// The header facts the decoding paths need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub format: Format,
    /// As stored, before the orientation is applied.
    pub stored_width: u32,
    pub stored_height: u32,
    pub orientation: Orientation,
}

impl Header {
    pub fn read(bytes: &[u8]) -> Result<Header, MediaError> {
        let format = Format::detect(bytes).ok_or(MediaError::Unsupported)?;
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
        // Only the header is read here; the pixel limits are ours to check.
        reader.no_limits();
        let mut decoder = reader.into_decoder()?;
        let (stored_width, stored_height) = decoder.dimensions();
        // An unreadable Exif block is not worth refusing the image for.
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        Ok(Header {
            format,
            stored_width,
            stored_height,
            orientation,
        })
    }

    /// Whether the orientation turns the image a quarter turn.
    pub fn swaps_sides(&self) -> bool {
        matches!(
            self.orientation,
            Orientation::Rotate90
                | Orientation::Rotate270
                | Orientation::Rotate90FlipH
                | Orientation::Rotate270FlipH
        )
    }

    pub fn info(&self) -> ImageInfo {
        let (width, height) = if self.swaps_sides() {
            (self.stored_height, self.stored_width)
        } else {
            (self.stored_width, self.stored_height)
        };
        ImageInfo {
            format: self.format,
            width,
            height,
        }
    }

    /// Reads the header and refuses images beyond `limits`.
    pub fn admitted(bytes: &[u8], limits: &Limits) -> Result<Header, MediaError> {
        let header = Header::read(bytes)?;
        limits.check(&header.info())?;
        Ok(header)
    }
}
