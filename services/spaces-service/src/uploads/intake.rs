//! One file of an upload, from its first byte to its object: its name
//! checked, its type told from its bytes, its size counted as it arrives
//! (413 past the limit, before the rest is read), and its bytes spooled —
//! kept in memory while small (below one storage part, or an image of at
//! most `uploads.image_memory_bytes`, which is processed whole), streamed
//! to the store beyond that. [`finalize`] then applies what needs the whole
//! file: image processing (metadata stripped, conversion), dimension
//! bounds, and the write to its object.

use super::names::{self, security_failed, too_large, type_not_allowed};
use crate::files::ResourceType;
use crate::storage::{ObjectWriter, Storage, Written};
use crate::upload_configs::{Quality, UploadFormat, UploadSettings};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use service_kit::{ApiError, FieldError};

/// How much of a file is read before deciding what it is: enough for
/// sniffing and for most image headers (Exif included).
pub(crate) const HEAD_BYTES: usize = 64 * 1024;

/// What a file is, told from its bytes and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kind {
    pub mime: String,
    /// Without the dot; the name's, else the content's.
    pub extension: Option<String>,
    /// The content's canonical extension, when its bytes were recognised.
    pub sniffed_extension: Option<String>,
    pub resource_type: ResourceType,
    /// JPEG, PNG or WebP: an image `media` processes.
    pub format: Option<media::Format>,
}

/// Extensions whose files are always recognised from their bytes: a file
/// named so whose bytes are not recognised is not what it says.
const RECOGNISABLE: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "avif", "heic", "heif", "ico",
    "psd", "pdf", "zip", "gz", "7z", "rar", "mp4", "m4v", "mov", "webm", "mkv", "avi", "mp3",
    "wav", "ogg", "flac", "m4a", "docx", "xlsx", "pptx",
];

/// Formats stored in a ZIP container, which the bytes may show as a ZIP.
const ZIP_CONTAINERS: &[&str] = &[
    "docx", "xlsx", "pptx", "odt", "ods", "odp", "epub", "key", "numbers", "pages",
];

/// Text formats, known by their extension (text has no magic bytes).
const TEXT: &[(&str, &str)] = &[
    ("txt", "text/plain"),
    ("text", "text/plain"),
    ("log", "text/plain"),
    ("csv", "text/csv"),
    ("tsv", "text/tab-separated-values"),
    ("md", "text/markdown"),
    ("json", "application/json"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
    ("vtt", "text/vtt"),
    ("srt", "application/x-subrip"),
];

/// One spelling per extension, to compare with a config's formats.
fn canonical(extension: &str) -> &str {
    match extension {
        "jpeg" | "jpe" => "jpg",
        "tiff" => "tif",
        "htm" => "html",
        "mpeg" => "mpg",
        "heic" => "heif",
        other => other,
    }
}

fn resource_type(family: media::Family) -> ResourceType {
    match family {
        media::Family::Image => ResourceType::Image,
        media::Family::Video => ResourceType::Video,
        media::Family::Audio => ResourceType::Audio,
        media::Family::Document => ResourceType::Document,
        media::Family::Archive => ResourceType::Archive,
        media::Family::Other => ResourceType::Other,
    }
}

/// What a file named `name` whose first bytes are `head` is; refused when
/// its bytes are not what its name says (a PNG named `.jpg`: `File type not
/// allowed.`) or are an executable (`Security validation failed.`).
pub(crate) fn classify(name: &str, head: &[u8]) -> Result<Kind, ApiError> {
    let name_ext = names::extension_of(name);
    match media::sniff(head) {
        Some(sniffed) => {
            // Executable content is refused whatever it is called.
            let executable = [
                "executable",
                "x-mach-binary",
                "x-sharedlib",
                "x-msdownload",
                "x-elf",
            ]
            .iter()
            .any(|kind| sniffed.mime.contains(kind));
            if executable || media::safe_filename(&format!("x.{}", sniffed.extension)).is_err() {
                return Err(security_failed());
            }
            if let Some(ext) = &name_ext {
                let container =
                    sniffed.extension == "zip" && ZIP_CONTAINERS.contains(&ext.as_str());
                if !sniffed.matches_name(name) && !container {
                    return Err(type_not_allowed());
                }
            }
            Ok(Kind {
                mime: sniffed.mime.to_owned(),
                extension: name_ext.or_else(|| Some(sniffed.extension.to_owned())),
                sniffed_extension: Some(sniffed.extension.to_owned()),
                resource_type: resource_type(sniffed.family),
                format: sniffed.format(),
            })
        }
        None => {
            if let Some(ext) = &name_ext
                && RECOGNISABLE.contains(&ext.as_str())
            {
                return Err(type_not_allowed());
            }
            let text = name_ext
                .as_deref()
                .and_then(|ext| TEXT.iter().find(|(e, _)| *e == ext));
            Ok(Kind {
                mime: text
                    .map_or("application/octet-stream", |(_, mime)| mime)
                    .to_owned(),
                resource_type: if text.is_some() {
                    ResourceType::Text
                } else {
                    ResourceType::Other
                },
                extension: name_ext,
                sniffed_extension: None,
                format: None,
            })
        }
    }
}

/// What an upload config asks of a file.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub max_size: u64,
    /// Canonical extensions; `None`: any (safe) format.
    pub allowed: Option<Vec<String>>,
    pub min_width: Option<u32>,
    pub max_width: Option<u32>,
    pub min_height: Option<u32>,
    pub max_height: Option<u32>,
    /// `None` when the config asks for no processing.
    pub processing: Option<media::UploadOptions>,
}

impl Rules {
    pub(crate) fn of(settings: &UploadSettings) -> Rules {
        let v = &settings.validation;
        let t = &settings.transformations;
        let format = match t.upload_format {
            UploadFormat::Jpeg => Some(media::Format::Jpeg),
            UploadFormat::Png => Some(media::Format::Png),
            UploadFormat::Webp => Some(media::Format::Webp),
            // AVIF, GIF and TIFF output is not made: such uploads are kept
            // in the format they came in.
            _ => None,
        };
        let quality = match t.upload_quality {
            Quality::Level(level) => Some(level),
            Quality::Auto => None,
        };
        let processing = (t.strip_metadata || format.is_some() || quality.is_some()).then_some(
            media::UploadOptions {
                strip_metadata: t.strip_metadata,
                format,
                quality,
            },
        );
        Rules {
            max_size: v.max_file_size,
            allowed: v.allowed_formats.as_deref().map(|list| {
                list.split(',')
                    .map(|f| canonical(f.trim()).to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            }),
            min_width: v.min_image_width,
            max_width: v.max_image_width,
            min_height: v.min_image_height,
            max_height: v.max_image_height,
            processing,
        }
    }

    /// The config's formats: the file's extension or its content's.
    pub(crate) fn check_kind(&self, kind: &Kind) -> Result<(), ApiError> {
        let Some(allowed) = &self.allowed else {
            return Ok(());
        };
        let accepted = [&kind.extension, &kind.sniffed_extension]
            .into_iter()
            .flatten()
            .any(|ext| allowed.iter().any(|a| a == canonical(ext)));
        if accepted {
            Ok(())
        } else {
            Err(type_not_allowed())
        }
    }

    pub(crate) fn check_size(&self, size: u64) -> Result<(), ApiError> {
        if size > self.max_size {
            Err(too_large())
        } else {
            Ok(())
        }
    }

    fn bounded(&self) -> bool {
        self.min_width.is_some()
            || self.max_width.is_some()
            || self.min_height.is_some()
            || self.max_height.is_some()
    }

    /// The config's image dimension bounds; an image whose size is unknown
    /// passes only when there are none.
    pub(crate) fn check_dimensions(&self, size: Option<(u32, u32)>) -> Result<(), ApiError> {
        if !self.bounded() {
            return Ok(());
        }
        let fits = size.is_some_and(|(w, h)| {
            self.min_width.is_none_or(|m| w >= m)
                && self.max_width.is_none_or(|m| w <= m)
                && self.min_height.is_none_or(|m| h >= m)
                && self.max_height.is_none_or(|m| h <= m)
        });
        if fits { Ok(()) } else { Err(bad_dimensions()) }
    }
}

pub(crate) fn bad_dimensions() -> ApiError {
    ApiError::validation(vec![FieldError::new(
        "file",
        "has invalid image dimensions",
    )])
}

fn not_an_image() -> ApiError {
    ApiError::validation(vec![FieldError::new("file", "must be a valid image")])
}

/// The bytes of a file, as received.
pub(crate) enum Body {
    Memory(Vec<u8>),
    /// Streamed to `key`.
    Stored {
        key: String,
        written: Written,
    },
}

/// Bytes being received: in memory up to `threshold`, then streamed to
/// `key`; past `limit`, 413 (`File too large.`) before more is read.
pub(crate) struct Spool<'a> {
    storage: &'a Storage,
    key: String,
    threshold: u64,
    limit: u64,
    /// Past `threshold` the file is refused (413) rather than streamed: its
    /// config asks for processing, which needs the whole file in memory.
    whole: bool,
    buffer: Vec<u8>,
    writer: Option<ObjectWriter>,
    size: u64,
}

impl<'a> Spool<'a> {
    pub(crate) fn new(storage: &'a Storage, key: String, threshold: u64, limit: u64) -> Spool<'a> {
        Spool {
            storage,
            key,
            threshold,
            limit,
            whole: false,
            buffer: Vec::new(),
            writer: None,
            size: 0,
        }
    }

    pub(crate) async fn push(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(too_large());
        }
        if let Some(writer) = &mut self.writer {
            return writer.write(chunk).await.map_err(ApiError::from);
        }
        if self.size <= self.threshold {
            self.buffer.extend_from_slice(chunk);
            return Ok(());
        }
        if self.whole {
            return Err(too_large());
        }
        let mut writer = self.storage.writer(&self.key).await?;
        let buffered = std::mem::take(&mut self.buffer);
        writer.write(&buffered).await?;
        writer.write(chunk).await?;
        self.writer = Some(writer);
        Ok(())
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) async fn finish(self) -> Result<Body, ApiError> {
        match self.writer {
            Some(writer) => Ok(Body::Stored {
                written: writer.finish().await?,
                key: self.key,
            }),
            None => Ok(Body::Memory(self.buffer)),
        }
    }
}

/// A file received, not yet checked against a config nor stored for good.
pub(crate) struct Received {
    /// The file's id (`fil_…`), chosen when its first byte arrived.
    pub id: String,
    /// Its name made safe.
    pub original_name: String,
    pub kind: Kind,
    pub size: u64,
    pub body: Body,
    /// What its header says, when it is an image `media` reads.
    pub info: Option<media::ImageInfo>,
}

/// How one file is received.
pub(crate) struct Intake<'a> {
    pub storage: &'a Storage,
    /// The config's rules when known as the file arrives; else the file is
    /// checked by [`finalize`] once they are.
    pub rules: Option<&'a Rules>,
    /// Where the file streams once too large to keep in memory.
    pub key: String,
    /// The size limit while the rules are unknown (`uploads.max_request_bytes`).
    pub cap: u64,
    /// `uploads.image_memory_bytes`.
    pub image_memory: u64,
    /// `storage.part_size_bytes`: smaller files are written in one request.
    pub part_size: u64,
    /// A MIME type the content must have (a signed URL's `content_type`).
    pub expected_mime: Option<&'a str>,
}

/// `image/jpg` and friends, as sniffing names them.
fn normalised_mime(mime: &str) -> String {
    match mime.trim().to_ascii_lowercase().as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".into(),
        "image/x-png" => "image/png".into(),
        other => other.into(),
    }
}

/// Whether the content's type is the one announced.
pub(crate) fn check_announced(kind: &Kind, announced: Option<&str>) -> Result<(), ApiError> {
    match announced {
        Some(mime) if kind.sniffed_extension.is_some() && normalised_mime(mime) != kind.mime => {
            Err(type_not_allowed())
        }
        _ => Ok(()),
    }
}

/// What an image's header says, checked: a decompression bomb is refused
/// from its header alone, and the config's dimension bounds apply when
/// known. `None` for other files (or a header not within `head`).
pub(crate) fn inspect(
    kind: &Kind,
    head: &[u8],
    rules: Option<&Rules>,
) -> Result<Option<media::ImageInfo>, ApiError> {
    if kind.format.is_none() {
        return Ok(None);
    }
    let Ok(info) = media::probe(head) else {
        return Ok(None);
    };
    media::Limits::default()
        .check(&info)
        .map_err(|_| bad_dimensions())?;
    if let Some(rules) = rules {
        rules.check_dimensions(Some((info.width, info.height)))?;
    }
    Ok(Some(info))
}

/// Receives one file from `stream`, named `original` by the client.
pub(crate) async fn receive<S, E>(
    mut stream: S,
    original: &str,
    id: String,
    intake: Intake<'_>,
) -> Result<Received, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<ApiError>,
{
    let original_name = names::file_name(original)?;
    // The first bytes tell what the file is (and an image's header its
    // size), before anything is stored.
    let mut head: Vec<u8> = Vec::with_capacity(HEAD_BYTES);
    let mut ended = true;
    while let Some(chunk) = stream.next().await {
        head.extend_from_slice(&chunk.map_err(Into::into)?);
        if head.len() >= HEAD_BYTES {
            ended = false;
            break;
        }
    }
    let kind = classify(&original_name, &head)?;
    check_announced(&kind, intake.expected_mime)?;
    let limit = match intake.rules {
        Some(rules) => {
            rules.check_kind(&kind)?;
            rules.max_size
        }
        None => intake.cap,
    };
    let info = inspect(&kind, &head, intake.rules)?;
    let processable = kind.format.is_some();
    let threshold = if processable {
        intake.image_memory.max(intake.part_size)
    } else {
        intake.part_size
    };
    let mut spool = Spool::new(intake.storage, intake.key, threshold, limit);
    // Past the memory threshold an image its config would process cannot be
    // processed: refused rather than stored unprocessed.
    spool.whole = processable && intake.rules.is_some_and(|r| r.processing.is_some());
    let outcome = async {
        spool.push(&head).await?;
        if !ended {
            while let Some(chunk) = stream.next().await {
                spool.push(&chunk.map_err(Into::into)?).await?;
            }
        }
        Ok::<_, ApiError>(())
    }
    .await;
    // On failure, dropping the spool aborts its write.
    outcome?;
    if spool.size() == 0 {
        return Err(ApiError::validation(vec![FieldError::new(
            "file",
            "must not be empty",
        )]));
    }
    let size = spool.size();
    let body = spool.finish().await?;
    Ok(Received {
        id,
        original_name,
        kind,
        size,
        body,
        info,
    })
}

/// A file stored for good, ready for its row.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub id: String,
    pub original_name: String,
    pub kind: Kind,
    pub size: u64,
    pub sha256: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub blur_hash: Option<String>,
    pub object_key: String,
}

/// Checks `received` against `rules` (again, when they were unknown as it
/// arrived), processes an image in memory as they ask, and stores it under
/// `key` (moving it there when it was streamed elsewhere). On failure,
/// whatever was stored of it is removed.
pub(crate) async fn finalize(
    storage: &Storage,
    image_work: &tokio::sync::Semaphore,
    received: Received,
    rules: &Rules,
    key: &str,
) -> Result<Stored, ApiError> {
    let streamed_to = match &received.body {
        Body::Stored { key, .. } => Some(key.clone()),
        Body::Memory(_) => None,
    };
    let outcome = store(storage, image_work, received, rules, key).await;
    if outcome.is_err()
        && let Some(streamed) = streamed_to
    {
        for key in [streamed.as_str(), key] {
            if let Err(e) = storage.delete(key).await {
                tracing::warn!(error = %e, key, "could not remove a refused upload");
            }
        }
    }
    outcome
}

async fn store(
    storage: &Storage,
    image_work: &tokio::sync::Semaphore,
    received: Received,
    rules: &Rules,
    key: &str,
) -> Result<Stored, ApiError> {
    let Received {
        id,
        original_name,
        mut kind,
        size,
        body,
        info,
    } = received;
    rules.check_kind(&kind)?;
    rules.check_size(size)?;
    let mut dimensions = info.map(|i| (i.width, i.height));
    let mut blur_hash = None;
    let written = match body {
        Body::Memory(bytes) => {
            let bytes = match kind.format {
                Some(_) => {
                    let options = rules.processing.unwrap_or_default();
                    // A few images at a time: decoding is CPU-bound.
                    let _permit = image_work.acquire().await.map_err(ApiError::internal)?;
                    let (processed, original) = tokio::task::spawn_blocking(move || {
                        let processed =
                            media::process_upload(&bytes, &options, &media::Limits::default());
                        (processed, bytes)
                    })
                    .await
                    .map_err(ApiError::internal)?;
                    let processed = processed.map_err(|e| match e {
                        media::MediaError::TooManyPixels { .. }
                        | media::MediaError::MemoryLimit => bad_dimensions(),
                        media::MediaError::Encode(message) => {
                            ApiError::internal(anyhow::anyhow!("encoding an upload: {message}"))
                        }
                        _ => not_an_image(),
                    })?;
                    dimensions = Some((processed.width, processed.height));
                    blur_hash = Some(processed.blur_hash.clone());
                    match processed.bytes {
                        Some(new) => {
                            if Some(processed.format) != kind.format {
                                kind.mime = processed.format.mime().to_owned();
                                kind.extension = Some(processed.format.extension().to_owned());
                                kind.sniffed_extension = kind.extension.clone();
                                kind.format = Some(processed.format);
                            }
                            new
                        }
                        None => original,
                    }
                }
                None => bytes,
            };
            rules.check_dimensions(dimensions)?;
            storage.put(key, Bytes::from(bytes)).await?
        }
        Body::Stored {
            key: streamed,
            written,
        } => {
            if kind.format.is_some() && rules.processing.is_some() {
                // Too large to process in memory.
                return Err(too_large());
            }
            if kind.resource_type == ResourceType::Image {
                rules.check_dimensions(dimensions)?;
            }
            if streamed != key {
                storage.rename(&streamed, key).await?;
            }
            written
        }
    };
    Ok(Stored {
        id,
        original_name,
        kind,
        size: written.size,
        sha256: written.sha256,
        width: dimensions.map(|d| d.0),
        height: dimensions.map(|d| d.1),
        blur_hash,
        object_key: key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

    #[test]
    fn content_decides() {
        let png = classify("pixel.png", PNG).unwrap();
        assert_eq!(png.mime, "image/png");
        assert_eq!(png.resource_type, ResourceType::Image);
        assert_eq!(png.format, Some(media::Format::Png));
        // A PNG named .jpg is refused by its content.
        let renamed = classify("pixel.jpg", PNG).unwrap_err();
        assert_eq!(renamed.errors[0].message, "File type not allowed.");
        // Text is told by its name; a "JPEG" of text is not one.
        let text = classify("notes.csv", b"a,b\n1,2\n").unwrap();
        assert_eq!(
            (text.mime.as_str(), text.resource_type),
            ("text/csv", ResourceType::Text)
        );
        assert!(classify("fake.jpg", b"hello").is_err());
        let unknown = classify("blob", &[0u8; 64]).unwrap();
        assert_eq!(unknown.mime, "application/octet-stream");
        // An executable is refused whatever its name.
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(64, 0);
        let elf = classify("notes", &elf).unwrap_err();
        assert_eq!(elf.errors[0].message, "Security validation failed.");
    }

    #[test]
    fn config_rules() {
        let mut settings = UploadSettings::default();
        settings.validation.allowed_formats = Some("jpeg,png".into());
        settings.validation.max_file_size = 10;
        settings.validation.min_image_width = Some(2);
        let rules = Rules::of(&settings);
        assert!(rules.processing.is_none());
        let png = classify("pixel.png", PNG).unwrap();
        rules.check_kind(&png).unwrap();
        let csv = classify("notes.csv", b"a").unwrap();
        assert!(rules.check_kind(&csv).is_err());
        assert!(rules.check_size(10).is_ok());
        assert_eq!(rules.check_size(11).unwrap_err().status.as_u16(), 413);
        assert!(rules.check_dimensions(Some((1, 5))).is_err());
        assert!(rules.check_dimensions(Some((2, 5))).is_ok());
        assert!(rules.check_dimensions(None).is_err());
        settings.transformations.strip_metadata = true;
        assert!(
            Rules::of(&settings)
                .processing
                .is_some_and(|p| p.strip_metadata)
        );
    }
}
