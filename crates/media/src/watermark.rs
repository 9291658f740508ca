//! A space's watermark, laid over the images it serves.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbaImage};

use crate::MediaError;
use crate::codec;
use crate::probe::{Header, Limits};
use crate::transform::Compass;

/// The longest side a watermark is kept at: a quarter of the largest output.
const MAX_SIDE: u32 = 1024;

/// A decoded watermark image with its position and opacity; decode it once
/// (per space and watermark URL) and reuse it for every render.
///
/// It is drawn a quarter of the output's width wide (and at most a quarter
/// of its height tall, keeping its shape), at its compass position with a
/// margin of 2% of the output's shorter side, alpha-blended at `opacity`
/// times its own alpha.
#[derive(Clone)]
pub struct Watermark {
    image: RgbaImage,
    position: Compass,
    opacity: f32,
}

impl std::fmt::Debug for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermark")
            .field("size", &self.image.dimensions())
            .field("position", &self.position)
            .field("opacity", &self.opacity)
            .finish()
    }
}

impl Watermark {
    /// Decodes the watermark image (JPEG, PNG or WebP, transparency kept).
    /// `opacity` runs from 0 (invisible) to 1 (opaque) and is clamped to it.
    pub fn decode(
        bytes: &[u8],
        position: Compass,
        opacity: f64,
        limits: &Limits,
    ) -> Result<Watermark, MediaError> {
        let header = Header::admitted(bytes, limits)?;
        let image = codec::decode(bytes, &header, limits, None)?;
        let image = if image.width().max(image.height()) > MAX_SIDE {
            image.thumbnail(MAX_SIDE, MAX_SIDE)
        } else {
            image
        };
        let opacity = if opacity.is_nan() {
            0.0
        } else {
            opacity.clamp(0.0, 1.0)
        };
        Ok(Watermark {
            image: image.into_rgba8(),
            position,
            opacity: opacity as f32,
        })
    }

    pub fn position(&self) -> Compass {
        self.position
    }

    pub fn opacity(&self) -> f64 {
        f64::from(self.opacity)
    }

    /// Where and how large the watermark lands on a `width` × `height`
    /// output: `(x, y, w, h)`, or `None` when it would be under a pixel.
    pub(crate) fn placement(&self, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
        let (mw, mh) = (
            f64::from(self.image.width()),
            f64::from(self.image.height()),
        );
        let mut w = f64::from(width) / 4.0;
        let mut h = w * mh / mw;
        if h > f64::from(height) / 4.0 {
            h = f64::from(height) / 4.0;
            w = h * mw / mh;
        }
        let (w, h) = (w.round() as u32, h.round() as u32);
        if w == 0 || h == 0 {
            return None;
        }
        let margin = (f64::from(width.min(height)) * 0.02).round();
        let (ax, ay) = self.position.anchor();
        let place = |outer: u32, inner: u32, anchor: f64| {
            let free = f64::from(outer - inner);
            let at = margin + (free - 2.0 * margin).max(0.0) * anchor;
            (at.round() as u32).min(outer - inner)
        };
        Some((place(width, w, ax), place(height, h, ay), w, h))
    }

    /// Blends the watermark into an RGB or RGBA image.
    pub(crate) fn apply(&self, canvas: &mut DynamicImage) {
        if self.opacity <= 0.0 {
            return;
        }
        let Some((x0, y0, w, h)) = self.placement(canvas.width(), canvas.height()) else {
            return;
        };
        let Some(mark) = self.resized(w, h) else {
            return;
        };
        let canvas_width = canvas.width() as usize;
        let (pixels, channels) = match canvas {
            DynamicImage::ImageRgba8(rgba) => (&mut **rgba, 4),
            DynamicImage::ImageRgb8(rgb) => (&mut **rgb, 3),
            // decode() yields only RGB and RGBA.
            _ => return,
        };
        for (y, row) in mark.chunks_exact(w as usize * 4).enumerate() {
            for (x, src) in row.chunks_exact(4).enumerate() {
                let alpha = f32::from(src[3]) / 255.0 * self.opacity;
                if alpha <= 0.0 {
                    continue;
                }
                let at = ((y0 as usize + y) * canvas_width + x0 as usize + x) * channels;
                let dst = &mut pixels[at..at + channels];
                let dst_alpha = if channels == 4 {
                    f32::from(dst[3]) / 255.0
                } else {
                    1.0
                };
                // Porter-Duff "over" on straight (non-premultiplied) alpha.
                let out_alpha = alpha + dst_alpha * (1.0 - alpha);
                for c in 0..3 {
                    let value = (f32::from(src[c]) * alpha
                        + f32::from(dst[c]) * dst_alpha * (1.0 - alpha))
                        / out_alpha;
                    dst[c] = value.round().clamp(0.0, 255.0) as u8;
                }
                if channels == 4 {
                    dst[3] = (out_alpha * 255.0).round() as u8;
                }
            }
        }
    }

    /// The watermark's RGBA pixels at `w` × `h`.
    fn resized(&self, w: u32, h: u32) -> Option<Vec<u8>> {
        if (w, h) == self.image.dimensions() {
            return Some(self.image.as_raw().clone());
        }
        let src = ImageRef::new(
            self.image.width(),
            self.image.height(),
            self.image.as_raw(),
            PixelType::U8x4,
        )
        .ok()?;
        let mut dst = Image::new(w, h, PixelType::U8x4);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        Resizer::new().resize(&src, &mut dst, &options).ok()?;
        Some(dst.into_vec())
    }
}
