//! What a file is, judged by its content rather than its name.

use crate::Format;

/// How many leading bytes [`sniff`] looks at, at most. Pass at least this
/// many when the file is that long (ZIP-based office documents need them).
pub const SNIFF_BYTES: usize = 8192;

/// The broad kind of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Image,
    Video,
    Audio,
    Document,
    Archive,
    Other,
}

impl Family {
    /// Lowercase name (`image`, `video`, …), as Tuzzle's `resource_type`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Image => "image",
            Family::Video => "video",
            Family::Audio => "audio",
            Family::Document => "document",
            Family::Archive => "archive",
            Family::Other => "other",
        }
    }
}

/// A file type recognised from magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub mime: &'static str,
    /// Canonical extension without the dot (`jpg`, `png`, `pdf`, …).
    pub extension: &'static str,
    pub family: Family,
}

impl Sniffed {
    /// The format, when it is one this crate transforms.
    pub fn format(&self) -> Option<Format> {
        match self.mime {
            "image/jpeg" => Some(Format::Jpeg),
            "image/png" => Some(Format::Png),
            "image/webp" => Some(Format::Webp),
            _ => None,
        }
    }

    /// Whether `name`'s last extension names this type (`.jpeg` and `.jpg`
    /// alike, ignoring case): the check that refuses a PNG uploaded as
    /// `photo.jpg`.
    pub fn matches_name(&self, name: &str) -> bool {
        let Some((_, extension)) = name.rsplit_once('.') else {
            return false;
        };
        let extension = extension.to_ascii_lowercase();
        if extension == self.extension {
            return true;
        }
        match Format::parse(&extension) {
            Some(format) => Some(format) == self.format(),
            None => ALIASES
                .iter()
                .any(|(alias, canonical)| *alias == extension && *canonical == self.extension),
        }
    }
}

/// Other spellings of canonical extensions.
const ALIASES: &[(&str, &str)] = &[
    ("tiff", "tif"),
    ("htm", "html"),
    ("mpeg", "mpg"),
    ("heic", "heif"),
    ("svgz", "svg"),
];

/// Identifies a file from its first bytes (see [`SNIFF_BYTES`]); `None` when
/// nothing is recognised (plain text, CSV, unknown binary).
///
/// SVG is recognised as `image/svg+xml` of the image family, so that an SVG
/// renamed `.png` is seen for what it is (it can carry script).
pub fn sniff(head: &[u8]) -> Option<Sniffed> {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    if is_svg(head) {
        return Some(Sniffed {
            mime: "image/svg+xml",
            extension: "svg",
            family: Family::Image,
        });
    }
    let kind = infer::get(head)?;
    let family = match kind.matcher_type() {
        infer::MatcherType::Image => Family::Image,
        infer::MatcherType::Video => Family::Video,
        infer::MatcherType::Audio => Family::Audio,
        infer::MatcherType::Doc | infer::MatcherType::Book => Family::Document,
        // infer files PDF, RTF and PostScript with the archives.
        infer::MatcherType::Archive => match kind.extension() {
            "pdf" | "rtf" | "ps" | "epub" => Family::Document,
            _ => Family::Archive,
        },
        _ => Family::Other,
    };
    Some(Sniffed {
        mime: kind.mime_type(),
        extension: kind.extension(),
        family,
    })
}

/// An SVG document: an `<svg` element opening the document, after an optional
/// byte-order mark, XML declaration, comments and doctype.
fn is_svg(head: &[u8]) -> bool {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let text = text.trim_ascii_start();
    if !text.starts_with(b"<") {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    let Some(at) = lower.windows(4).position(|w| w == b"<svg") else {
        return false;
    };
    // Everything before the element must be prolog: declarations and comments.
    let prolog = &lower[..at];
    prolog.starts_with(b"<?xml") || prolog.starts_with(b"<!") || prolog.trim_ascii().is_empty()
}
