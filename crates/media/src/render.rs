//! Delivery: an original turned into the variant a transform asks for.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage, RgbaImage};

use crate::codec::{self, default_quality};
use crate::probe::{Header, ImageInfo, Limits};
use crate::transform::{
    Gravity, InvalidModifiers, MAX_DIMENSION, Resize, Transform, WEBP_MAX_DIMENSION,
};
use crate::{Format, MediaError, Watermark};

/// A derived variant, ready to store and serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    /// The format produced (a negotiated WebP may have fallen back, see
    /// [`Transform::negotiated`]).
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

impl Rendered {
    pub fn mime(&self) -> &'static str {
        self.format.mime()
    }
}

/// Applies `transform` to an original (JPEG, PNG or WebP), lays `watermark`
/// over the result, and encodes it.
///
/// The header is checked against `limits` before decoding. A JPEG that only
/// needs to be much smaller than it is gets decoded at 1/2, 1/4 or 1/8 scale.
/// The output is stripped of all metadata and has its Exif orientation
/// applied to the pixels.
pub fn render(
    bytes: &[u8],
    transform: &Transform,
    watermark: Option<&Watermark>,
    limits: &Limits,
) -> Result<Rendered, MediaError> {
    let header = Header::admitted(bytes, limits)?;
    let (plan, format) = resolve(header.info(), transform)?;
    let decoded = codec::decode(bytes, &header, limits, Some(plan.decoded_size_needed()))?;
    let mut output = plan.apply(decoded, transform.gravity())?;
    if let Some(watermark) = watermark {
        watermark.apply(&mut output);
    }
    let (width, height) = (output.width(), output.height());
    let quality = transform
        .quality()
        .unwrap_or_else(|| default_quality(width, height));
    Ok(Rendered {
        bytes: codec::encode(&output, format, quality)?,
        format,
        width,
        height,
    })
}

/// What [`render`] makes of an image: its format and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

/// The format and size [`render`] gives `transform` on an image of
/// `source`'s format and displayed size, or why it cannot apply (Tuzzle's
/// post-meta validation), without decoding a pixel: a caller can name,
/// validate and describe a variant before rendering it.
pub fn output(source: ImageInfo, transform: &Transform) -> Result<Output, InvalidModifiers> {
    let (plan, format) = resolve(source, transform)?;
    Ok(Output {
        format,
        width: plan.out.0,
        height: plan.out.1,
    })
}

/// The plan and the output format of `transform` on `source`.
fn resolve(source: ImageInfo, transform: &Transform) -> Result<(Plan, Format), InvalidModifiers> {
    let mut plan = Plan::new(source.width, source.height, transform);
    let mut format = transform.format().unwrap_or(source.format);
    if format == Format::Webp && plan.exceeds(WEBP_MAX_DIMENSION) {
        if transform.format_negotiated() {
            format = source.format;
        } else if transform.resize() == Resize::Fit {
            plan.shrink_within(WEBP_MAX_DIMENSION);
        } else {
            return Err(InvalidModifiers::one(
                "f",
                format!("WebP output is limited to {WEBP_MAX_DIMENSION} pixels on each side."),
            ));
        }
    }
    Ok((plan, format))
}

/// The geometry of one transform on one source size.
#[derive(Debug, Clone, Copy)]
struct Plan {
    source: (f64, f64),
    /// The part of the source that ends up in the output, in source pixels
    /// (placed by the gravity once the pixels are known).
    region: (f64, f64),
    out: (u32, u32),
    /// `false` when the region is copied pixel for pixel (`crop`).
    scaled: bool,
}

impl Plan {
    fn new(width: u32, height: u32, transform: &Transform) -> Plan {
        let (sw, sh) = (f64::from(width), f64::from(height));
        let whole = Plan {
            source: (sw, sh),
            region: (sw, sh),
            out: (width, height),
            scaled: true,
        };
        let proportional = |w: Option<u32>, h: Option<u32>| match (w, h) {
            (Some(w), _) => (w, side(sh * f64::from(w) / sw)),
            (None, Some(h)) => (side(sw * f64::from(h) / sh), h),
            (None, None) => (width, height),
        };
        let mut plan = match (transform.resize(), transform.width(), transform.height()) {
            (_, None, None) => whole,
            (Resize::Crop, Some(w), Some(h)) => {
                let (w, h) = (w.min(width), h.min(height));
                Plan {
                    region: (f64::from(w), f64::from(h)),
                    out: (w, h),
                    scaled: false,
                    ..whole
                }
            }
            (Resize::Scale, Some(w), Some(h)) => Plan {
                out: (w, h),
                ..whole
            },
            (Resize::Fit, Some(w), Some(h)) => {
                let s = (f64::from(w) / sw).min(f64::from(h) / sh);
                Plan {
                    out: (side(sw * s), side(sh * s)),
                    ..whole
                }
            }
            (Resize::Fill | Resize::Thumb, Some(w), Some(h)) => {
                let (w, h) = (f64::from(w), f64::from(h));
                let s = (w / sw).max(h / sh);
                if transform.resize() == Resize::Thumb && s > 1.0 {
                    // The largest box of the asked shape inside the source, unscaled.
                    let k = (sw / w).min(sh / h);
                    Plan {
                        region: ((w * k).min(sw), (h * k).min(sh)),
                        out: (side(w * k), side(h * k)),
                        ..whole
                    }
                } else {
                    Plan {
                        region: ((w / s).min(sw), (h / s).min(sh)),
                        out: (side(w), side(h)),
                        ..whole
                    }
                }
            }
            (Resize::Thumb, w, h) => {
                let (ow, oh) = proportional(w, h);
                if ow > width || oh > height {
                    whole
                } else {
                    Plan {
                        out: (ow, oh),
                        ..whole
                    }
                }
            }
            (_, w, h) => Plan {
                out: proportional(w, h),
                ..whole
            },
        };
        plan.shrink_within(MAX_DIMENSION);
        plan
    }

    fn exceeds(&self, max: u32) -> bool {
        self.out.0 > max || self.out.1 > max
    }

    /// Scales the output down, keeping its shape, until both sides fit `max`.
    fn shrink_within(&mut self, max: u32) {
        if self.exceeds(max) {
            let (w, h) = (f64::from(self.out.0), f64::from(self.out.1));
            let k = (f64::from(max) / w).min(f64::from(max) / h);
            self.out = (side(w * k).min(max), side(h * k).min(max));
            self.scaled = true;
        }
    }

    /// The smallest displayed size the source may be decoded at without
    /// losing detail the output keeps.
    fn decoded_size_needed(&self) -> (u32, u32) {
        let (sw, sh) = self.source;
        if !self.scaled {
            return (sw as u32, sh as u32);
        }
        let need = |source: f64, out: u32, region: f64| {
            (source * f64::from(out) / region).ceil().min(source) as u32
        };
        (
            need(sw, self.out.0, self.region.0),
            need(sh, self.out.1, self.region.1),
        )
    }

    /// Cuts and resizes `image` (the source, possibly decoded smaller).
    fn apply(&self, image: DynamicImage, gravity: Gravity) -> Result<DynamicImage, MediaError> {
        let (dw, dh) = (f64::from(image.width()), f64::from(image.height()));
        let (fx, fy) = (dw / self.source.0, dh / self.source.1);
        let region = ((self.region.0 * fx).min(dw), (self.region.1 * fy).min(dh));
        let (left, top) = match gravity {
            Gravity::Compass(compass) => {
                let (ax, ay) = compass.anchor();
                ((dw - region.0) * ax, (dh - region.1) * ay)
            }
            Gravity::Auto => busiest_origin(&image, region),
        };
        if !self.scaled {
            let (x, y) = (left.round() as u32, top.round() as u32);
            return Ok(image.crop_imm(x, y, self.out.0, self.out.1));
        }
        if region == (dw, dh) && self.out == (image.width(), image.height()) {
            return Ok(image);
        }
        let (raw, pixel_type) = match &image {
            DynamicImage::ImageRgba8(rgba) => (rgba.as_raw().as_slice(), PixelType::U8x4),
            other => (other.as_bytes(), PixelType::U8x3),
        };
        let resize_error = |e: &dyn std::fmt::Display| MediaError::Encode(format!("resizing: {e}"));
        let src = ImageRef::new(image.width(), image.height(), raw, pixel_type)
            .map_err(|e| resize_error(&e))?;
        let mut dst = Image::new(self.out.0, self.out.1, pixel_type);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(left, top, region.0, region.1);
        Resizer::new()
            .resize(&src, &mut dst, &options)
            .map_err(|e| resize_error(&e))?;
        let (w, h) = self.out;
        let resized = match pixel_type {
            PixelType::U8x4 => {
                RgbaImage::from_raw(w, h, dst.into_vec()).map(DynamicImage::ImageRgba8)
            }
            _ => RgbImage::from_raw(w, h, dst.into_vec()).map(DynamicImage::ImageRgb8),
        };
        resized.ok_or_else(|| MediaError::Encode("resizing: buffer size mismatch".into()))
    }
}

/// A side length from a computed one: rounded, at least 1.
fn side(length: f64) -> u32 {
    (length.round() as u32).max(1)
}

/// `auto` gravity: the region's origin where it holds the most edge energy
/// (sum of absolute luminance differences to the left and upper neighbour),
/// searched independently along each axis on a sample of at most about 256k
/// pixels. Ties, as on a flat image, go to the centre.
fn busiest_origin(image: &DynamicImage, region: (f64, f64)) -> (f64, f64) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let raw = image.as_bytes();
    let channels = usize::from(image.color().bytes_per_pixel());
    let step = (((w * h) as f64 / 262_144.0).sqrt().ceil() as usize).max(1);
    let luma = |x: usize, y: usize| {
        let i = (y * w + x) * channels;
        (77 * i32::from(raw[i]) + 150 * i32::from(raw[i + 1]) + 29 * i32::from(raw[i + 2])) >> 8
    };
    let mut columns = vec![0u64; w];
    let mut rows = vec![0u64; h];
    for y in (1..h).step_by(step) {
        for x in (1..w).step_by(step) {
            let l = luma(x, y);
            let energy = (l - luma(x - 1, y)).unsigned_abs() + (l - luma(x, y - 1)).unsigned_abs();
            columns[x] += u64::from(energy);
            rows[y] += u64::from(energy);
        }
    }
    (
        busiest_window(&columns, region.0.round() as usize) as f64,
        busiest_window(&rows, region.1.round() as usize) as f64,
    )
}

/// The start of the `window`-long run of `profile` with the largest sum.
fn busiest_window(profile: &[u64], window: usize) -> usize {
    if window == 0 || window >= profile.len() {
        return 0;
    }
    let last = profile.len() - window;
    let centre = last / 2;
    let mut sum: u64 = profile[..window].iter().sum();
    let mut best = (sum, 0usize);
    for start in 1..=last {
        sum = sum + profile[start + window - 1] - profile[start - 1];
        let closer = start.abs_diff(centre) < best.1.abs_diff(centre);
        if sum > best.0 || (sum == best.0 && closer) {
            best = (sum, start);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(w: u32, h: u32, query: &[(&str, &str)]) -> Plan {
        Plan::new(w, h, &Transform::parse(query.iter().copied()).unwrap())
    }

    #[test]
    fn modes_give_the_documented_sizes() {
        assert_eq!(plan(400, 200, &[("w", "100")]).out, (100, 50));
        assert_eq!(plan(400, 200, &[("h", "100")]).out, (200, 100));
        assert_eq!(plan(400, 200, &[("w", "100"), ("h", "100")]).out, (100, 50));
        assert_eq!(
            plan(400, 200, &[("w", "100"), ("h", "100"), ("r", "scale")]).out,
            (100, 100)
        );
        let fill = plan(400, 200, &[("w", "100"), ("h", "100"), ("r", "fill")]);
        assert_eq!((fill.out, fill.region), ((100, 100), (200.0, 200.0)));
        let crop = plan(400, 200, &[("w", "100"), ("h", "500"), ("r", "crop")]);
        assert_eq!((crop.out, crop.scaled), ((100, 200), false));
        // thumb never enlarges: a 300×300 box from a 400×200 source is 200×200
        assert_eq!(
            plan(400, 200, &[("w", "300"), ("h", "300"), ("r", "thumb")]).out,
            (200, 200)
        );
        assert_eq!(
            plan(400, 200, &[("w", "100"), ("h", "100"), ("r", "thumb")]).out,
            (100, 100)
        );
    }

    #[test]
    fn outputs_stay_within_bounds() {
        // A 1-pixel-wide strip asked 4096 wide would be 409600 tall.
        let strip = plan(1, 100, &[("w", "4096")]);
        assert!(strip.out.0 <= MAX_DIMENSION && strip.out.1 <= MAX_DIMENSION);
        assert_eq!(strip.out.1, MAX_DIMENSION);
    }

    #[test]
    fn decodes_only_what_the_output_needs() {
        assert_eq!(
            plan(4000, 3000, &[("w", "400")]).decoded_size_needed(),
            (400, 300)
        );
        // fill crops half the width: the decode must keep twice the detail across
        let fill = plan(4000, 2000, &[("w", "100"), ("h", "100"), ("r", "fill")]);
        assert_eq!(fill.decoded_size_needed(), (200, 100));
        let crop = plan(4000, 3000, &[("w", "10"), ("h", "10"), ("r", "crop")]);
        assert_eq!(crop.decoded_size_needed(), (4000, 3000));
    }

    #[test]
    fn busiest_window_prefers_energy_then_the_centre() {
        assert_eq!(busiest_window(&[0, 0, 0, 0, 9, 9, 0], 2), 4);
        assert_eq!(busiest_window(&[0; 9], 3), 3);
        assert_eq!(busiest_window(&[1, 2, 3], 5), 0);
    }
}
