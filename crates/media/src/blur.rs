//! Blurhash placeholders (`storage_meta.blur_hash`, `x-blurhash`).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use crate::MediaError;
use crate::codec;
use crate::probe::{Header, Limits};

/// Components across and down: the common 4 × 3, a 28-character string.
const COMPONENTS: (u32, u32) = (4, 3);
/// The hash is computed on a copy at most this many pixels on its long side.
const SAMPLE_SIDE: u32 = 32;

/// The blurhash of an image (4 × 3 components), computed on a downscale of at
/// most 32 pixels a side; a JPEG is decoded at 1/8 scale for it.
pub fn blurhash(bytes: &[u8], limits: &Limits) -> Result<String, MediaError> {
    let header = Header::admitted(bytes, limits)?;
    let info = header.info();
    let (w, h) = sample_size(info.width, info.height);
    let image = codec::decode(bytes, &header, limits, Some((w, h)))?;
    Ok(of_image(&image))
}

/// The blurhash of a decoded (RGB or RGBA) image.
pub(crate) fn of_image(image: &DynamicImage) -> String {
    let (w, h) = sample_size(image.width(), image.height());
    let rgba = shrink_to_rgba(image, w, h);
    // encode() fails only on component counts outside 1..=9 and on a buffer
    // of the wrong size, neither of which can happen here.
    blurhash::encode(COMPONENTS.0, COMPONENTS.1, w, h, &rgba).unwrap_or_default()
}

fn sample_size(width: u32, height: u32) -> (u32, u32) {
    let long = width.max(height).max(1);
    if long <= SAMPLE_SIDE {
        return (width.max(1), height.max(1));
    }
    let scale = f64::from(SAMPLE_SIDE) / f64::from(long);
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
    (side(width), side(height))
}

fn shrink_to_rgba(image: &DynamicImage, w: u32, h: u32) -> Vec<u8> {
    let rgba = image.to_rgba8();
    if rgba.dimensions() == (w, h) {
        return rgba.into_raw();
    }
    let resized = ImageRef::new(rgba.width(), rgba.height(), rgba.as_raw(), PixelType::U8x4)
        .ok()
        .and_then(|src| {
            let mut dst = Image::new(w, h, PixelType::U8x4);
            let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Box));
            Resizer::new().resize(&src, &mut dst, &options).ok()?;
            Some(dst.into_vec())
        });
    resized.unwrap_or_else(|| image.thumbnail_exact(w, h).into_rgba8().into_raw())
}
