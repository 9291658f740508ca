//! Tuzzle's delivery transforms: `w`, `h`, `r`, `g`, `f`, `q`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::Format;

/// The largest `w` or `h`, and the largest side any transform produces.
pub const MAX_DIMENSION: u32 = 4096;
/// Tuzzle's limit for WebP output. An explicit `f=webp` beyond it is scaled
/// down in `fit` mode and refused in the others; a negotiated WebP beyond it
/// falls back to the source format.
pub const WEBP_MAX_DIMENSION: u32 = 2000;

/// How the image is fitted to `w` × `h` (`r`). With only one of `w` and `h`,
/// every mode but `crop` scales proportionally to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Resize {
    /// Exactly `w` × `h`, the aspect ratio not kept.
    Scale,
    /// The largest size within `w` × `h` keeping the aspect ratio (Tuzzle's
    /// default). No letterboxing: the result may be smaller on one side.
    #[default]
    Fit,
    /// Exactly `w` × `h`: scaled to cover the box, the overflow cropped at
    /// the gravity.
    Fill,
    /// A `w` × `h` region cut from the original at the gravity, unscaled
    /// (clipped to the image). Needs both `w` and `h`.
    Crop,
    /// `fill` for thumbnails: never enlarges (a smaller image gives a
    /// smaller thumbnail of the same shape) and centres on the most detailed
    /// region unless `g` says otherwise.
    Thumb,
}

impl Resize {
    fn name(self) -> &'static str {
        match self {
            Resize::Scale => "scale",
            Resize::Fit => "fit",
            Resize::Fill => "fill",
            Resize::Crop => "crop",
            Resize::Thumb => "thumb",
        }
    }
}

/// A compass point, for crop gravity and a watermark's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compass {
    #[default]
    Center,
    North,
    NorthEast,
    East,
    SouthEast,
    South,
    SouthWest,
    West,
    NorthWest,
}

impl Compass {
    /// The short name used in variant keys (`c`, `n`, `ne`, …).
    pub fn short(self) -> &'static str {
        match self {
            Compass::Center => "c",
            Compass::North => "n",
            Compass::NorthEast => "ne",
            Compass::East => "e",
            Compass::SouthEast => "se",
            Compass::South => "s",
            Compass::SouthWest => "sw",
            Compass::West => "w",
            Compass::NorthWest => "nw",
        }
    }

    /// Where a box of `inner` fits along each axis of `outer`, as fractions:
    /// 0 (left/top), 0.5 (centre), 1 (right/bottom).
    pub(crate) fn anchor(self) -> (f64, f64) {
        match self {
            Compass::Center => (0.5, 0.5),
            Compass::North => (0.5, 0.0),
            Compass::NorthEast => (1.0, 0.0),
            Compass::East => (1.0, 0.5),
            Compass::SouthEast => (1.0, 1.0),
            Compass::South => (0.5, 1.0),
            Compass::SouthWest => (0.0, 1.0),
            Compass::West => (0.0, 0.5),
            Compass::NorthWest => (0.0, 0.0),
        }
    }
}

/// Parses `n`, `north`, `ne`, `northeast`, `north-east`, `north_east`, …,
/// `c`, `center`, `centre`, ignoring case (spaces-service stores a
/// watermark's position as `northeast` and friends).
impl FromStr for Compass {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let s: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        Ok(match s.as_str() {
            "c" | "center" | "centre" => Compass::Center,
            "n" | "north" => Compass::North,
            "ne" | "northeast" => Compass::NorthEast,
            "e" | "east" => Compass::East,
            "se" | "southeast" => Compass::SouthEast,
            "s" | "south" => Compass::South,
            "sw" | "southwest" => Compass::SouthWest,
            "w" | "west" => Compass::West,
            "nw" | "northwest" => Compass::NorthWest,
            _ => return Err(()),
        })
    }
}

/// Where a crop is taken (`g`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gravity {
    Compass(Compass),
    /// The most detailed region: the window with the most edge energy (the
    /// sum of luminance gradients) along the cropped axis. There is no face
    /// detection: Tuzzle's `face`, `faces` and `eyes` are read as `auto`.
    Auto,
}

impl Gravity {
    fn short(self) -> &'static str {
        match self {
            Gravity::Compass(compass) => compass.short(),
            Gravity::Auto => "auto",
        }
    }
}

/// A parsed, validated set of delivery parameters.
///
/// Build one with [`Transform::parse`]; unknown parameters (`expires`,
/// `signature`, `api_key`, …) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transform {
    width: Option<u32>,
    height: Option<u32>,
    resize: Option<Resize>,
    gravity: Option<Gravity>,
    format: Option<Format>,
    quality: Option<u8>,
    negotiated: bool,
}

impl Transform {
    /// Parses query pairs, e.g. `form_urlencoded::parse(query.as_bytes())` or
    /// a map's `iter()`. Every invalid parameter is reported, not just the
    /// first (see [`InvalidModifiers::details`]).
    ///
    /// ```
    /// let t = media::Transform::parse([("w", "400"), ("f", "webp"), ("q", "80")]).unwrap();
    /// assert_eq!(t.variant_key(), "w400_h0_rfit_gc_fwebp_q80");
    /// let err = media::Transform::parse([("w", "0"), ("f", "avif")]).unwrap_err();
    /// assert!(err.details().contains_key("w") && err.details().contains_key("f"));
    /// ```
    pub fn parse<I, K, V>(pairs: I) -> Result<Transform, InvalidModifiers>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut transform = Transform::default();
        let mut errors = InvalidModifiers::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for (key, value) in pairs {
            let value = value.as_ref();
            let key: &'static str = match key.as_ref() {
                "w" => "w",
                "h" => "h",
                "r" => "r",
                "g" => "g",
                "f" => "f",
                "q" => "q",
                _ => continue,
            };
            if seen.contains(&key) {
                errors.add(key, "The parameter may be given once.".into());
                continue;
            }
            seen.push(key);
            let outcome = match key {
                "w" => dimension(value).map(|v| transform.width = Some(v)),
                "h" => dimension(value).map(|v| transform.height = Some(v)),
                "r" => resize(value).map(|v| transform.resize = Some(v)),
                "g" => gravity(value).map(|v| transform.gravity = Some(v)),
                "f" => format(value).map(|v| transform.format = Some(v)),
                _ => quality(value).map(|v| transform.quality = Some(v)),
            };
            if let Err(message) = outcome {
                errors.add(key, message);
            }
        }
        if transform.resize == Some(Resize::Crop)
            && !errors.details.contains_key("r")
            && (transform.width.is_none() || transform.height.is_none())
        {
            errors.add("r", "Crop needs both w and h.".into());
        }
        if errors.details.is_empty() {
            Ok(transform)
        } else {
            Err(errors)
        }
    }

    /// Whether no transform parameter was given (nor a format negotiated):
    /// the original may be served as it is, unless a watermark applies.
    pub fn is_identity(&self) -> bool {
        *self == Transform::default()
    }

    /// Fills in the output format from the `Accept` header when `f` was not
    /// given (see [`negotiate`]). A negotiated WebP never fails the request:
    /// beyond [`WEBP_MAX_DIMENSION`] the source format is served instead.
    #[must_use]
    pub fn negotiated(mut self, accept: Option<&str>, source: Format) -> Transform {
        if self.format.is_none() {
            self.format = Some(negotiate(accept, source));
            self.negotiated = true;
        }
        self
    }

    pub fn width(&self) -> Option<u32> {
        self.width
    }

    pub fn height(&self) -> Option<u32> {
        self.height
    }

    /// `r`, or its default, `fit`.
    pub fn resize(&self) -> Resize {
        self.resize.unwrap_or_default()
    }

    /// `g`, or the mode's default: `auto` for `thumb`, `center` otherwise.
    pub fn gravity(&self) -> Gravity {
        self.gravity.unwrap_or(match self.resize() {
            Resize::Thumb => Gravity::Auto,
            _ => Gravity::Compass(Compass::Center),
        })
    }

    /// `f`, or the negotiated format; `None` keeps the source format.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Whether the format came from [`Transform::negotiated`] rather than `f`.
    pub fn format_negotiated(&self) -> bool {
        self.negotiated
    }

    /// `q`; `None` lets the output size choose, as Tuzzle does (90 up to
    /// 1000 px, 85 up to 2500, 80 beyond).
    pub fn quality(&self) -> Option<u8> {
        self.quality
    }

    /// A stable name for the variant this transform derives, to store it
    /// beside the original: `w{w}_h{h}_r{mode}_g{gravity}_f{format}_q{q}`,
    /// `0` standing for an absent `w`, `h` or `q`, the defaults of `r` and `g`
    /// written out, `fsrc` for the source format and `n` instead of `f` for a
    /// negotiated one. Equal transforms give equal keys, in any parameter
    /// order. The watermark is not part of it: add its own fingerprint when
    /// variants are watermarked.
    pub fn variant_key(&self) -> String {
        let format = match (self.format, self.negotiated) {
            (None, _) => "fsrc".to_owned(),
            (Some(f), false) => format!("f{}", f.name()),
            (Some(f), true) => format!("n{}", f.name()),
        };
        format!(
            "w{}_h{}_r{}_g{}_{}_q{}",
            self.width.unwrap_or(0),
            self.height.unwrap_or(0),
            self.resize().name(),
            self.gravity().short(),
            format,
            self.quality.unwrap_or(0),
        )
    }
}

/// The output format for a request without `f`: WebP when the `Accept`
/// header lists `image/webp` (with a non-zero q), otherwise the source format,
/// or JPEG for a WebP source. AVIF is not produced, so `image/avif` does not
/// count.
pub fn negotiate(accept: Option<&str>, source: Format) -> Format {
    let accepts_webp = accept.is_some_and(|accept| {
        accept.split(',').any(|item| {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("image/webp") && !refused
        })
    });
    match (accepts_webp, source) {
        (true, _) => Format::Webp,
        (false, Format::Webp) => Format::Jpeg,
        (false, other) => other,
    }
}

/// Tuzzle's CDN answers these as `{"error": {"code": 422, "message":
/// "Invalid modifiers", "type": "ValidationError", "details": {…}}}`, the
/// details being [`InvalidModifiers::details`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvalidModifiers {
    details: BTreeMap<&'static str, String>,
}

impl InvalidModifiers {
    pub(crate) fn one(field: &'static str, message: String) -> Self {
        let mut errors = InvalidModifiers::default();
        errors.add(field, message);
        errors
    }

    fn add(&mut self, field: &'static str, message: String) {
        self.details.entry(field).or_insert(message);
    }

    /// Parameter name (`w`, `h`, `r`, `g`, `f`, `q`) → what is wrong with it.
    pub fn details(&self) -> &BTreeMap<&'static str, String> {
        &self.details
    }
}

impl fmt::Display for InvalidModifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Invalid modifiers")?;
        for (field, message) in &self.details {
            write!(f, "; {field}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidModifiers {}

fn dimension(value: &str) -> Result<u32, String> {
    integer(value)
        .filter(|v| (1..=u64::from(MAX_DIMENSION)).contains(v))
        .map(|v| v as u32)
        .ok_or_else(|| format!("Must be an integer between 1 and {MAX_DIMENSION}."))
}

fn quality(value: &str) -> Result<u8, String> {
    integer(value)
        .filter(|v| (1..=100).contains(v))
        .map(|v| v as u8)
        .ok_or_else(|| "Must be an integer between 1 and 100.".into())
}

/// Plain decimal digits only: no sign, no fraction, no unit.
fn integer(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn resize(value: &str) -> Result<Resize, String> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "scale" => Resize::Scale,
        "fit" => Resize::Fit,
        "fill" => Resize::Fill,
        "crop" => Resize::Crop,
        "thumb" => Resize::Thumb,
        _ => return Err("Must be one of scale, fit, fill, crop, thumb.".into()),
    })
}

fn gravity(value: &str) -> Result<Gravity, String> {
    match value.to_ascii_lowercase().as_str() {
        "auto" | "face" | "faces" | "eyes" => Ok(Gravity::Auto),
        other => other.parse().map(Gravity::Compass).map_err(|()| {
            "Must be one of center, n, ne, e, se, s, sw, w, nw (or north, northeast, …), auto."
                .into()
        }),
    }
}

fn format(value: &str) -> Result<Format, String> {
    if let Some(format) = Format::parse(value) {
        return Ok(format);
    }
    match value.to_ascii_lowercase().as_str() {
        name @ ("avif" | "gif" | "tiff" | "tif" | "pdf" | "heic" | "heif" | "jxl") => Err(format!(
            "The {name} output format is not supported; use jpeg, png or webp."
        )),
        _ => Err("Must be one of jpeg, png, webp.".into()),
    }
}
