//! An upload config's document in Tuzzle's shape: its fields, their
//! defaults, and the checks of what clients send (each failure named by its
//! field, e.g. `config.validation.max_file_size`). Requests carry patches:
//! what they name changes, the rest keeps its value (on creation, the
//! defaults); the whole is then checked.

use crate::addresses;
use crate::plain_text;
use crate::spaces::{check_description, nullable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use service_kit::FieldError;
use std::borrow::Cow;
use utoipa::ToSchema;

/// 5 GiB.
pub const MAX_FILE_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Tuzzle's default limit, 50 MB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 50 * 1024 * 1024;
const MAX_FORMATS: usize = 50;
const MAX_FORMAT_LEN: usize = 16;
/// Extensions never accepted, whatever a config says: executables and server
/// scripts (Tuzzle blocks them on every upload).
const DANGEROUS_FORMATS: &[&str] = &[
    "exe", "bat", "cmd", "com", "msi", "sh", "bash", "ps1", "php", "phtml", "phar", "asp", "aspx",
    "jsp", "cgi",
];
/// Image bounds (`min_image_width`, …), pixels.
const MAX_IMAGE_DIMENSION: u32 = 65_535;
/// Eager transformation sizes, pixels.
const MAX_EAGER_DIMENSION: u32 = 10_000;
const MAX_EAGER: usize = 20;
const MAX_TAGS: usize = 50;
const MAX_TAG_LEN: usize = 64;
const MAX_FOLDER: usize = 255;
const MAX_REFERRERS: usize = 50;
const MAX_UPLOADS_PER_HOUR: u32 = 1000;

service_kit::words! {
    /// How uploaded files are delivered.
    DeliveryType {
        /// Public, at their CDN URL.
        Upload = "upload",
        /// Only by signed URLs.
        Private = "private",
        /// Only to authenticated requests.
        Authenticated = "authenticated",
    }
}

service_kit::words! {
    /// The format uploads are stored in.
    UploadFormat {
        /// As uploaded.
        Original = "original",
        /// JPEG.
        Jpeg = "jpeg",
        /// PNG.
        Png = "png",
        /// WebP.
        Webp = "webp",
        /// AVIF.
        Avif = "avif",
        /// GIF.
        Gif = "gif",
        /// TIFF.
        Tiff = "tiff",
    }
}

service_kit::words! {
    /// How an eager transformation fits its size (Tuzzle's resize modes).
    Resize {
        /// Scaled to the size, the aspect ratio kept.
        Scale = "scale",
        /// Fitted within the size (the default).
        Fit = "fit",
        /// Filling the size, cropped to keep the aspect ratio.
        Fill = "fill",
        /// Cropped to exactly the size.
        Crop = "crop",
        /// A thumbnail around the most interesting region.
        Thumb = "thumb",
    }
}

/// `upload_quality`: `auto`, or a quality from 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quality {
    #[default]
    Auto,
    Level(u8),
}

const QUALITY_EXPECTED: &str = "must be \"auto\" or a whole number from 1 to 100";

impl Serialize for Quality {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Quality::Auto => s.serialize_str("auto"),
            Quality::Level(level) => s.serialize_u8(*level),
        }
    }
}

impl<'de> Deserialize<'de> for Quality {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Quality;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"auto\" or a whole number from 1 to 100")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Quality, E> {
                match text {
                    "auto" => Ok(Quality::Auto),
                    _ => text
                        .parse::<u64>()
                        .map_err(|_| E::custom(QUALITY_EXPECTED))
                        .and_then(|n| self.visit_u64(n)),
                }
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Quality, E> {
                match u8::try_from(n) {
                    Ok(level @ 1..=100) => Ok(Quality::Level(level)),
                    _ => Err(E::custom(QUALITY_EXPECTED)),
                }
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Quality, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(QUALITY_EXPECTED))
                    .and_then(|n| self.visit_u64(n))
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Quality, E> {
                Err(E::custom(QUALITY_EXPECTED))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl utoipa::PartialSchema for Quality {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .description(Some("`auto`, or a quality from 1 to 100."))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["auto"])),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(100)),
            )
            .into()
    }
}

impl ToSchema for Quality {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Quality")
    }
}

/// Where uploads go and how they are named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Storage {
    /// The folder uploads go to (`products/images`); null: the space's root.
    #[schema(required = true)]
    pub folder: Option<String>,
    /// Uploads get generated names (`image-01HQ…`); the original is kept as
    /// `original_name`. Default `true`.
    #[schema(required = true)]
    pub generate_filename: bool,
    /// Names are made unique within their folder. Default `true`.
    #[schema(required = true)]
    pub unique_filename: bool,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            folder: None,
            generate_filename: true,
            unique_filename: true,
        }
    }
}

/// What an upload must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Validation {
    /// Accepted extensions, comma-separated and lowercase (`jpg,png,webp`);
    /// null: every format but executables and server scripts, which are never
    /// accepted.
    #[schema(required = true)]
    pub allowed_formats: Option<String>,
    /// Largest accepted file, in bytes: 1 to 5 GiB. Default 50 MB (52428800).
    #[schema(required = true, minimum = 1, maximum = 5368709120_u64)]
    pub max_file_size: u64,
    /// Pixels; null: no bound. Images only.
    #[schema(required = true, minimum = 1, maximum = 65535)]
    pub min_image_width: Option<u32>,
    #[schema(required = true, minimum = 1, maximum = 65535)]
    pub max_image_width: Option<u32>,
    #[schema(required = true, minimum = 1, maximum = 65535)]
    pub min_image_height: Option<u32>,
    #[schema(required = true, minimum = 1, maximum = 65535)]
    pub max_image_height: Option<u32>,
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            allowed_formats: None,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            min_image_width: None,
            max_image_width: None,
            min_image_height: None,
            max_image_height: None,
        }
    }
}

/// A variant made as soon as an image is uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Eager {
    /// Pixels, 1 to 10000; null: from the height and the aspect ratio.
    #[schema(required = true, minimum = 1, maximum = 10000)]
    pub width: Option<u32>,
    /// Pixels, 1 to 10000; null: from the width and the aspect ratio.
    #[schema(required = true, minimum = 1, maximum = 10000)]
    pub height: Option<u32>,
    pub crop: Resize,
}

/// What is done to images as they are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Transformations {
    /// Default `auto`.
    #[schema(required = true)]
    pub upload_quality: Quality,
    /// Default `original`.
    #[schema(required = true)]
    pub upload_format: UploadFormat,
    /// Progressive JPEGs. Default `true`.
    #[schema(required = true)]
    pub progressive: bool,
    /// Drop EXIF and other metadata. Default `false`.
    #[schema(required = true)]
    pub strip_metadata: bool,
    /// At most 20.
    #[schema(required = true)]
    pub eager: Vec<Eager>,
}

impl Default for Transformations {
    fn default() -> Self {
        Transformations {
            upload_quality: Quality::Auto,
            upload_format: UploadFormat::Original,
            progressive: true,
            strip_metadata: false,
            eager: Vec::new(),
        }
    }
}

/// What uploads are labelled with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Metadata {
    /// Given to every upload: at most 50, each 1 to 64 characters.
    #[schema(required = true)]
    pub tags: Vec<String>,
    /// Tag images by their content. Default `false`.
    #[schema(required = true)]
    pub auto_tagging: bool,
}

/// Who hears of uploads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Notifications {
    /// `file.uploaded` events go here (besides the space's `webhook_url`): an
    /// `https` URL without credentials, not pointing to localhost or a
    /// private, loopback or link-local address.
    #[schema(required = true)]
    pub webhook_url: Option<String>,
}

/// A config's `config`: how uploads are stored, checked, processed, labelled
/// and announced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct UploadSettings {
    #[schema(required = true)]
    pub storage: Storage,
    #[schema(required = true)]
    pub validation: Validation,
    #[schema(required = true)]
    pub transformations: Transformations,
    #[schema(required = true)]
    pub metadata: Metadata,
    #[schema(required = true)]
    pub notifications: Notifications,
}

/// What unsigned uploads (`POST /upload/unsigned/{space}/{config}`, no
/// credential) must satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnsignedRestrictions {
    /// Domains the `Referer` must name (`example.com`, `*.example.com`); an
    /// empty list accepts any referrer.
    pub allowed_referrers: Vec<String>,
    /// Refuse unsigned uploads made over plain http.
    pub require_https: bool,
    /// 1 to 1000; null: the platform's own limit only.
    #[schema(required = true, minimum = 1, maximum = 1000)]
    pub max_uploads_per_hour: Option<u32>,
}

/// A config's fields besides its identity (id, name, space, times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fields {
    pub(crate) description: Option<String>,
    pub(crate) is_signed: bool,
    pub(crate) allow_unsigned: bool,
    pub(crate) delivery_type: DeliveryType,
    pub(crate) config: UploadSettings,
    pub(crate) unsigned_restrictions: Option<UnsignedRestrictions>,
}

impl Default for Fields {
    /// A new config's, as Tuzzle makes it.
    fn default() -> Self {
        Fields {
            description: None,
            is_signed: false,
            allow_unsigned: false,
            delivery_type: DeliveryType::Upload,
            config: UploadSettings::default(),
            unsigned_restrictions: None,
        }
    }
}

impl Fields {
    /// The `starter` config: images up to 10 MiB, signed uploads.
    pub(crate) fn starter() -> Fields {
        let mut fields = Fields {
            is_signed: true,
            ..Fields::default()
        };
        fields.config.validation.allowed_formats = Some("jpg,jpeg,png,gif,webp".into());
        fields.config.validation.max_file_size = 10 * 1024 * 1024;
        fields
    }
}

/// `config.storage` as sent; absent fields keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StoragePatch {
    /// A folder path (`products/images`): segments of letters, digits, spaces
    /// and `-_.`, at most 255 characters; null or empty: the space's root.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    folder: Option<Option<String>>,
    generate_filename: Option<bool>,
    unique_filename: Option<bool>,
}

/// `config.validation` as sent; absent fields keep their value, `null`
/// clears the nullable ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ValidationPatch {
    /// Comma-separated extensions (`jpg,png,webp`): 1 to 50, each 1 to 16
    /// letters or digits; a leading dot and case are ignored. Executables and
    /// server scripts are refused. Null or empty: every other format.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    allowed_formats: Option<Option<String>>,
    /// Bytes, 1 to 5 GiB.
    #[schema(minimum = 1, maximum = 5368709120_u64)]
    max_file_size: Option<u64>,
    /// Pixels, 1 to 65535; not above `max_image_width`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, nullable, minimum = 1, maximum = 65535)]
    min_image_width: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, nullable, minimum = 1, maximum = 65535)]
    max_image_width: Option<Option<u32>>,
    /// Pixels, 1 to 65535; not above `max_image_height`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, nullable, minimum = 1, maximum = 65535)]
    min_image_height: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, nullable, minimum = 1, maximum = 65535)]
    max_image_height: Option<Option<u32>>,
}

/// An eager transformation as sent: a width or a height (or both).
#[derive(Debug, Deserialize, ToSchema)]
pub struct EagerInput {
    #[schema(minimum = 1, maximum = 10000)]
    width: Option<u32>,
    #[schema(minimum = 1, maximum = 10000)]
    height: Option<u32>,
    /// Default `fit`.
    crop: Option<Resize>,
}

/// `config.transformations` as sent; absent fields keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TransformationsPatch {
    upload_quality: Option<Quality>,
    upload_format: Option<UploadFormat>,
    progressive: Option<bool>,
    strip_metadata: Option<bool>,
    /// Replaces the list; at most 20.
    eager: Option<Vec<EagerInput>>,
}

/// `config.metadata` as sent; absent fields keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct MetadataPatch {
    /// Replaces the list: at most 50, each 1 to 64 characters.
    tags: Option<Vec<String>>,
    auto_tagging: Option<bool>,
}

/// `config.notifications` as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct NotificationsPatch {
    /// An `https` URL without credentials, not pointing to localhost or a
    /// private, loopback or link-local address; null clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    webhook_url: Option<Option<String>>,
}

/// `config` as sent: the sections and fields named change, the others keep
/// their value (on creation: the defaults).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UploadSettingsPatch {
    storage: Option<StoragePatch>,
    validation: Option<ValidationPatch>,
    transformations: Option<TransformationsPatch>,
    metadata: Option<MetadataPatch>,
    notifications: Option<NotificationsPatch>,
}

/// `unsigned_restrictions` as sent: replaces the restrictions.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UnsignedRestrictionsInput {
    /// Required: referrer domains (`example.com`, `*.example.com`, with an
    /// optional port), at most 50; empty accepts any referrer.
    allowed_referrers: Option<Vec<String>>,
    /// Required.
    require_https: Option<bool>,
    /// 1 to 1000; null or absent: no limit of its own.
    #[schema(minimum = 1, maximum = 1000)]
    max_uploads_per_hour: Option<u32>,
}

/// The fields of a request body besides `name` and `space_id`.
pub(crate) struct Patch {
    pub(crate) description: Option<Option<String>>,
    pub(crate) is_signed: Option<bool>,
    pub(crate) allow_unsigned: Option<bool>,
    pub(crate) delivery_type: Option<DeliveryType>,
    pub(crate) config: Option<UploadSettingsPatch>,
    pub(crate) unsigned_restrictions: Option<Option<UnsignedRestrictionsInput>>,
}

/// Whether `patch`'s checks may pass private webhook targets.
#[derive(Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) allow_private_webhooks: bool,
}

fn bounded(value: Option<u32>, max: u32, field: &str, errors: &mut Vec<FieldError>) -> Option<u32> {
    match value {
        Some(v) if !(1..=max).contains(&v) => {
            errors.push(FieldError::new(
                field,
                format!("must be between 1 and {max}"),
            ));
            None
        }
        other => other,
    }
}

/// `jpg, .PNG,webp` as stored: `jpg,png,webp`; empty is none.
fn formats(raw: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    const FIELD: &str = "config.validation.allowed_formats";
    if raw.trim().is_empty() {
        return None;
    }
    let mut normalized: Vec<String> = Vec::new();
    for format in raw.split(',') {
        let format = format.trim().trim_start_matches('.').to_ascii_lowercase();
        if format.is_empty()
            || format.len() > MAX_FORMAT_LEN
            || !format.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            errors.push(FieldError::new(
                FIELD,
                format!(
                    "must list file extensions of 1 to {MAX_FORMAT_LEN} letters or digits, separated by commas"
                ),
            ));
            return None;
        }
        if DANGEROUS_FORMATS.contains(&format.as_str()) {
            errors.push(FieldError::new(
                FIELD,
                format!("must not allow executables or server scripts ({format})"),
            ));
            return None;
        }
        if !normalized.contains(&format) {
            normalized.push(format);
        }
    }
    if normalized.len() > MAX_FORMATS {
        errors.push(FieldError::new(
            FIELD,
            format!("must list at most {MAX_FORMATS} formats"),
        ));
        return None;
    }
    Some(normalized.join(","))
}

/// `/products//images/` as stored: `products/images`; empty is the root.
fn folder(raw: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    let segments: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    let valid = trimmed.chars().count() <= MAX_FOLDER
        && segments.iter().all(|segment| {
            *segment != "."
                && *segment != ".."
                && segment == &segment.trim()
                && segment
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
        });
    if valid {
        Some(segments.join("/"))
    } else {
        errors.push(FieldError::new(
            "config.storage.folder",
            format!(
                "must be a folder path of at most {MAX_FOLDER} characters: segments of letters, digits, spaces and -_. separated by /"
            ),
        ));
        None
    }
}

fn tags(raw: Vec<String>, errors: &mut Vec<FieldError>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    if raw.len() > MAX_TAGS {
        errors.push(FieldError::new(
            "config.metadata.tags",
            format!("must list at most {MAX_TAGS} tags"),
        ));
        return kept;
    }
    for (i, tag) in raw.iter().enumerate() {
        let tag = tag.trim();
        if tag.is_empty() || tag.chars().count() > MAX_TAG_LEN || !plain_text(tag, false) {
            errors.push(FieldError::new(
                format!("config.metadata.tags[{i}]"),
                format!("must be 1 to {MAX_TAG_LEN} characters, without control characters"),
            ));
        } else if !kept.iter().any(|k| k == tag) {
            kept.push(tag.to_owned());
        }
    }
    kept
}

fn restrictions(
    input: UnsignedRestrictionsInput,
    errors: &mut Vec<FieldError>,
) -> Option<UnsignedRestrictions> {
    let before = errors.len();
    let mut referrers: Vec<String> = Vec::new();
    match input.allowed_referrers {
        None => errors.push(FieldError::new(
            "unsigned_restrictions.allowed_referrers",
            "field is required",
        )),
        Some(list) if list.len() > MAX_REFERRERS => errors.push(FieldError::new(
            "unsigned_restrictions.allowed_referrers",
            format!("must list at most {MAX_REFERRERS} domains"),
        )),
        Some(list) => {
            for (i, raw) in list.iter().enumerate() {
                match addresses::referrer_pattern(raw) {
                    Ok(pattern) if !referrers.contains(&pattern) => referrers.push(pattern),
                    Ok(_) => {}
                    Err(message) => errors.push(FieldError::new(
                        format!("unsigned_restrictions.allowed_referrers[{i}]"),
                        message,
                    )),
                }
            }
        }
    }
    if input.require_https.is_none() {
        errors.push(FieldError::new(
            "unsigned_restrictions.require_https",
            "field is required",
        ));
    }
    let max_uploads_per_hour = bounded(
        input.max_uploads_per_hour,
        MAX_UPLOADS_PER_HOUR,
        "unsigned_restrictions.max_uploads_per_hour",
        errors,
    );
    (errors.len() == before).then(|| UnsignedRestrictions {
        allowed_referrers: referrers,
        require_https: input.require_https.unwrap_or(true),
        max_uploads_per_hour,
    })
}

impl UploadSettings {
    /// Applies `patch`, recording what is invalid in `errors`.
    fn patch(&mut self, patch: UploadSettingsPatch, rules: Rules, errors: &mut Vec<FieldError>) {
        if let Some(storage) = patch.storage {
            if let Some(value) = storage.folder {
                self.storage.folder = value.and_then(|f| folder(&f, errors));
            }
            if let Some(v) = storage.generate_filename {
                self.storage.generate_filename = v;
            }
            if let Some(v) = storage.unique_filename {
                self.storage.unique_filename = v;
            }
        }
        if let Some(validation) = patch.validation {
            let v = &mut self.validation;
            if let Some(value) = validation.allowed_formats {
                v.allowed_formats = value.and_then(|f| formats(&f, errors));
            }
            if let Some(size) = validation.max_file_size {
                if (1..=MAX_FILE_SIZE).contains(&size) {
                    v.max_file_size = size;
                } else {
                    errors.push(FieldError::new(
                        "config.validation.max_file_size",
                        format!("must be between 1 and {MAX_FILE_SIZE} bytes"),
                    ));
                }
            }
            for (value, slot, field) in [
                (
                    validation.min_image_width,
                    &mut v.min_image_width,
                    "min_image_width",
                ),
                (
                    validation.max_image_width,
                    &mut v.max_image_width,
                    "max_image_width",
                ),
                (
                    validation.min_image_height,
                    &mut v.min_image_height,
                    "min_image_height",
                ),
                (
                    validation.max_image_height,
                    &mut v.max_image_height,
                    "max_image_height",
                ),
            ] {
                if let Some(value) = value {
                    *slot = bounded(
                        value,
                        MAX_IMAGE_DIMENSION,
                        &format!("config.validation.{field}"),
                        errors,
                    );
                }
            }
            for (min, max, field, other) in [
                (
                    v.min_image_width,
                    v.max_image_width,
                    "min_image_width",
                    "max_image_width",
                ),
                (
                    v.min_image_height,
                    v.max_image_height,
                    "min_image_height",
                    "max_image_height",
                ),
            ] {
                if let (Some(min), Some(max)) = (min, max)
                    && min > max
                {
                    errors.push(FieldError::new(
                        format!("config.validation.{field}"),
                        format!("must not be greater than {other}"),
                    ));
                }
            }
        }
        if let Some(transformations) = patch.transformations {
            let t = &mut self.transformations;
            if let Some(v) = transformations.upload_quality {
                t.upload_quality = v;
            }
            if let Some(v) = transformations.upload_format {
                t.upload_format = v;
            }
            if let Some(v) = transformations.progressive {
                t.progressive = v;
            }
            if let Some(v) = transformations.strip_metadata {
                t.strip_metadata = v;
            }
            if let Some(list) = transformations.eager {
                if list.len() > MAX_EAGER {
                    errors.push(FieldError::new(
                        "config.transformations.eager",
                        format!("must list at most {MAX_EAGER} transformations"),
                    ));
                } else {
                    t.eager = list
                        .into_iter()
                        .enumerate()
                        .map(|(i, eager)| {
                            let at = format!("config.transformations.eager[{i}]");
                            let width = bounded(
                                eager.width,
                                MAX_EAGER_DIMENSION,
                                &format!("{at}.width"),
                                errors,
                            );
                            let height = bounded(
                                eager.height,
                                MAX_EAGER_DIMENSION,
                                &format!("{at}.height"),
                                errors,
                            );
                            if eager.width.is_none() && eager.height.is_none() {
                                errors.push(FieldError::new(at, "must have a width or a height"));
                            }
                            Eager {
                                width,
                                height,
                                crop: eager.crop.unwrap_or(Resize::Fit),
                            }
                        })
                        .collect();
                }
            }
        }
        if let Some(metadata) = patch.metadata {
            if let Some(list) = metadata.tags {
                self.metadata.tags = tags(list, errors);
            }
            if let Some(v) = metadata.auto_tagging {
                self.metadata.auto_tagging = v;
            }
        }
        if let Some(notifications) = patch.notifications
            && let Some(url) = notifications.webhook_url
        {
            self.notifications.webhook_url = url.and_then(|u| {
                addresses::webhook_url(&u, rules.allow_private_webhooks)
                    .map_err(|message| {
                        errors.push(FieldError::new("config.notifications.webhook_url", message))
                    })
                    .ok()
            });
        }
    }
}

impl Fields {
    /// Applies `patch`, then checks the whole.
    pub(crate) fn patched(
        mut self,
        patch: Patch,
        rules: Rules,
        errors: &mut Vec<FieldError>,
    ) -> Fields {
        if let Some(description) = patch.description {
            self.description = check_description(description, errors);
        }
        if let Some(v) = patch.is_signed {
            self.is_signed = v;
        }
        if let Some(v) = patch.allow_unsigned {
            self.allow_unsigned = v;
        }
        if let Some(v) = patch.delivery_type {
            self.delivery_type = v;
        }
        if let Some(config) = patch.config {
            self.config.patch(config, rules, errors);
        }
        if let Some(value) = patch.unsigned_restrictions {
            self.unsigned_restrictions = value.and_then(|input| restrictions(input, errors));
        }
        if self.allow_unsigned
            && self.unsigned_restrictions.is_none()
            && !errors
                .iter()
                .any(|e| e.field.starts_with("unsigned_restrictions"))
        {
            errors.push(FieldError::new(
                "unsigned_restrictions",
                "field is required when allow_unsigned is true",
            ));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            allow_private_webhooks: false,
        }
    }

    fn patch(config: serde_json::Value) -> (Fields, Vec<String>) {
        let patch: UploadSettingsPatch = serde_json::from_value(config).unwrap();
        let mut errors = Vec::new();
        let fields = Fields::default().patched(
            Patch {
                description: None,
                is_signed: None,
                allow_unsigned: None,
                delivery_type: None,
                config: Some(patch),
                unsigned_restrictions: None,
            },
            rules(),
            &mut errors,
        );
        (fields, errors.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn formats_folders_and_quality_are_normalized() {
        let (fields, errors) = patch(serde_json::json!({
            "validation": {"allowed_formats": " JPG, .png,jpg ,webp"},
            "storage": {"folder": "/products//images/"},
            "transformations": {"upload_quality": "80", "eager": [{"width": 64}]},
        }));
        assert!(errors.is_empty(), "{errors:?}");
        let config = fields.config;
        assert_eq!(
            config.validation.allowed_formats.as_deref(),
            Some("jpg,png,webp")
        );
        assert_eq!(config.storage.folder.as_deref(), Some("products/images"));
        assert_eq!(config.transformations.upload_quality, Quality::Level(80));
        assert_eq!(config.transformations.eager[0].crop, Resize::Fit);
        assert_eq!(
            serde_json::to_value(Quality::Level(80)).unwrap(),
            serde_json::json!(80)
        );
        assert_eq!(
            serde_json::to_value(Quality::Auto).unwrap(),
            serde_json::json!("auto")
        );
        for bad in [
            serde_json::json!("best"),
            serde_json::json!(0),
            serde_json::json!(101),
            serde_json::json!(-5),
            serde_json::json!(5.5),
            serde_json::json!(true),
        ] {
            assert!(
                serde_json::from_value::<Quality>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (config, field) in [
            (
                serde_json::json!({"validation": {"allowed_formats": "jpg,../x"}}),
                "config.validation.allowed_formats",
            ),
            (
                serde_json::json!({"validation": {"allowed_formats": "jpg,php"}}),
                "config.validation.allowed_formats",
            ),
            (
                serde_json::json!({"validation": {"min_image_width": 10, "max_image_width": 5}}),
                "config.validation.min_image_width",
            ),
            (
                serde_json::json!({"validation": {"max_image_height": 0}}),
                "config.validation.max_image_height",
            ),
            (
                serde_json::json!({"storage": {"folder": "a/../b"}}),
                "config.storage.folder",
            ),
            (
                serde_json::json!({"transformations": {"eager": [{"crop": "fill"}]}}),
                "config.transformations.eager[0]",
            ),
            (
                serde_json::json!({"transformations": {"eager": [{"width": 10001}]}}),
                "config.transformations.eager[0].width",
            ),
            (
                serde_json::json!({"metadata": {"tags": ["ok", ""]}}),
                "config.metadata.tags[1]",
            ),
            (
                serde_json::json!({"notifications": {"webhook_url": "http://x.example.com"}}),
                "config.notifications.webhook_url",
            ),
        ] {
            assert_eq!(patch(config.clone()).1, [field], "{config}");
        }
    }
}
