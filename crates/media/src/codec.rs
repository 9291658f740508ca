//! The three image formats: telling them apart, decoding (at a reduced DCT
//! scale where that is enough) and encoding.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ExtendedColorType, ImageEncoder, ImageReader, RgbImage};

use crate::MediaError;
use crate::probe::{Header, Limits};

/// An image format this crate decodes and encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
}

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
        }
    }

    /// The canonical file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
        }
    }

    /// The name Tuzzle's `f` parameter and upload configs use.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
        }
    }

    /// Parses a format name or extension, ignoring case: `jpeg` (and `jpg`,
    /// `jpe`, `jif`, `jfif`, `jfi`), `png`, `webp`.
    pub fn parse(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "jpeg" | "jpg" | "jpe" | "jif" | "jfif" | "jfi" => Some(Format::Jpeg),
            "png" => Some(Format::Png),
            "webp" => Some(Format::Webp),
            _ => None,
        }
    }

    /// The format of an image, from its signature.
    pub(crate) fn detect(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Format::Webp)
        } else {
            None
        }
    }

    pub(crate) fn image_format(self) -> image::ImageFormat {
        match self {
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Png => image::ImageFormat::Png,
            Format::Webp => image::ImageFormat::WebP,
        }
    }
}

/// Decodes an image with its orientation applied, as 8-bit RGB, or RGBA when
/// it has transparency.
///
/// `at_least` is the smallest displayed size the caller needs: a JPEG whose
/// full size is at least twice that is decoded at 1/2, 1/4 or 1/8 of its size
/// by scaling its DCT, which skips most of the decoding work and memory. The
/// result may then be smaller than the header's size (never smaller than
/// `at_least`).
pub(crate) fn decode(
    bytes: &[u8],
    header: &Header,
    limits: &Limits,
    at_least: Option<(u32, u32)>,
) -> Result<DynamicImage, MediaError> {
    limits.check(&header.info())?;
    let scaled = match (header.format, at_least) {
        (Format::Jpeg, Some(size)) => decode_jpeg_scaled(bytes, header, limits, size)?,
        _ => None,
    };
    let mut image = match scaled {
        Some(image) => image,
        None => {
            let mut reader =
                ImageReader::with_format(Cursor::new(bytes), header.format.image_format());
            reader.limits(limits.for_decoder());
            reader.decode()?
        }
    };
    image.apply_orientation(header.orientation);
    Ok(match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.into_rgba8()),
        other => DynamicImage::ImageRgb8(other.into_rgb8()),
    })
}

/// The DCT-scaled decode of a JPEG, or `None` when full size is needed or the
/// JPEG is of a kind left to the general decoder (CMYK, 12-bit).
fn decode_jpeg_scaled(
    bytes: &[u8],
    header: &Header,
    limits: &Limits,
    displayed: (u32, u32),
) -> Result<Option<DynamicImage>, MediaError> {
    let (need_w, need_h) = if header.swaps_sides() {
        (displayed.1, displayed.0)
    } else {
        displayed
    };
    let (full_w, full_h) = (header.stored_width, header.stored_height);
    // The largest reduction that still covers the needed size on both sides.
    let Some(denominator) = [8u32, 4, 2]
        .into_iter()
        .find(|d| full_w.div_ceil(*d) >= need_w && full_h.div_ceil(*d) >= need_h)
    else {
        return Ok(None);
    };
    let (Ok(want_w), Ok(want_h)) = (
        u16::try_from(full_w.div_ceil(denominator)),
        u16::try_from(full_h.div_ceil(denominator)),
    ) else {
        return Ok(None);
    };
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.set_max_decoding_buffer_size(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
    let (width, height) = decoder.scale(want_w, want_h).map_err(jpeg_error)?;
    let Some(info) = decoder.info() else {
        return Ok(None);
    };
    let (width, height) = (u32::from(width), u32::from(height));
    let gray = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => false,
        jpeg_decoder::PixelFormat::L8 => true,
        jpeg_decoder::PixelFormat::CMYK32 | jpeg_decoder::PixelFormat::L16 => return Ok(None),
    };
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let image = if gray {
        image::GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    };
    image
        .map(Some)
        .ok_or_else(|| MediaError::Malformed("the decoded size does not match the header".into()))
}

fn jpeg_error(error: jpeg_decoder::Error) -> MediaError {
    match error {
        jpeg_decoder::Error::Unsupported(feature) => {
            MediaError::Malformed(format!("unsupported JPEG feature: {feature:?}"))
        }
        jpeg_decoder::Error::Format(message)
            if message.contains("exceeds maximum allowed size") =>
        {
            MediaError::MemoryLimit
        }
        other => MediaError::Malformed(other.to_string()),
    }
}

/// Encodes an RGB or RGBA image. JPEG has no transparency: RGBA is laid on
/// white first. WebP is lossy (libwebp), its transparency kept.
pub(crate) fn encode(
    image: &DynamicImage,
    format: Format,
    quality: u8,
) -> Result<Vec<u8>, MediaError> {
    let quality = quality.clamp(1, 100);
    let (width, height) = (image.width(), image.height());
    let mut out = Vec::new();
    match format {
        Format::Jpeg => {
            let flattened;
            let rgb = match image {
                DynamicImage::ImageRgb8(rgb) => rgb,
                other => {
                    flattened = flatten_on_white(other);
                    &flattened
                }
            };
            JpegEncoder::new_with_quality(&mut out, quality).encode(
                rgb.as_raw(),
                width,
                height,
                ExtendedColorType::Rgb8,
            )?;
        }
        Format::Png => {
            let (raw, color) = raw_pixels(image);
            PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
                .write_image(raw, width, height, color)?;
        }
        Format::Webp => {
            let (raw, color) = raw_pixels(image);
            let encoder = match color {
                ExtendedColorType::Rgba8 => webp::Encoder::from_rgba(raw, width, height),
                _ => webp::Encoder::from_rgb(raw, width, height),
            };
            let mut config = webp::WebPConfig::new().map_err(|()| {
                MediaError::Encode("libwebp refused its default configuration".into())
            })?;
            config.quality = f32::from(quality);
            // libwebp's default effort: method 4 of 0 (fastest) to 6.
            config.method = 4;
            let encoded = encoder
                .encode_advanced(&config)
                .map_err(|e| MediaError::Encode(format!("libwebp: {e:?}")))?;
            out.extend_from_slice(&encoded);
        }
    }
    Ok(out)
}

/// The raw bytes of an RGB or RGBA image (what [`decode`] returns).
fn raw_pixels(image: &DynamicImage) -> (&[u8], ExtendedColorType) {
    match image {
        DynamicImage::ImageRgba8(rgba) => (rgba.as_raw(), ExtendedColorType::Rgba8),
        other => (other.as_bytes(), other.color().into()),
    }
}

fn flatten_on_white(image: &DynamicImage) -> RgbImage {
    let rgba = image.to_rgba8();
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (out, pixel) in rgb.pixels_mut().zip(rgba.pixels()) {
        let alpha = u32::from(pixel[3]);
        for channel in 0..3 {
            let value = u32::from(pixel[channel]) * alpha + 255 * (255 - alpha);
            out[channel] = ((value + 127) / 255) as u8;
        }
    }
    rgb
}

/// Tuzzle's quality when `q` is absent, from the largest output side.
pub(crate) fn default_quality(width: u32, height: u32) -> u8 {
    match width.max(height) {
        0..=1000 => 90,
        1001..=2500 => 85,
        2501..=5000 => 80,
        5001..=7500 => 75,
        7501..=10000 => 70,
        _ => 60,
    }
}
