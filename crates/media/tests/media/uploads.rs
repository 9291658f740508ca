use image::ImageFormat;
use media::{Format, Limits, UploadOptions, process_upload};

use crate::fixtures;

const XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><rdf:Description exif:GPSLatitude=\"48,51.48N\"/></x:xmpmeta>";
const COMMENT: &[u8] = b"shot at 12 Rue de Rivoli";
const TRAILER: &[u8] = b"TRAILING-SECRET";
/// An APP2 ICC profile segment (one chunk of one; the profile's bytes are
/// not parsed by anyone here).
const ICC: &[u8] = b"ICC_PROFILE\0\x01\x01not-a-real-profile";

/// A JPEG carrying Exif with GPS, XMP, a comment and data after its end.
fn tagged_jpeg(orientation: Option<u16>) -> (image::RgbImage, Vec<u8>) {
    let pixels = fixtures::photo(96, 64);
    let plain = fixtures::jpeg(&pixels, 90);
    let exif = [
        b"Exif\0\0".as_slice(),
        &fixtures::exif_with_gps(orientation),
    ]
    .concat();
    let mut bytes = fixtures::with_jpeg_segment(&plain, 0xE2, ICC);
    bytes = fixtures::with_jpeg_segment(&bytes, 0xFE, COMMENT);
    bytes = fixtures::with_jpeg_segment(&bytes, 0xE1, XMP);
    bytes = fixtures::with_jpeg_segment(&bytes, 0xE1, &exif);
    bytes.extend_from_slice(TRAILER);
    (pixels, bytes)
}

fn strip() -> UploadOptions {
    UploadOptions {
        strip_metadata: true,
        ..UploadOptions::default()
    }
}

#[test]
fn strip_metadata_removes_exif_gps_xmp_and_comments_losslessly() {
    let (_, original) = tagged_jpeg(None);
    assert!(fixtures::has_gps(&original), "the fixture carries GPS");
    assert!(fixtures::contains(&original, b"xmpmeta") && fixtures::contains(&original, COMMENT));

    let processed = process_upload(&original, &strip(), &Limits::default()).unwrap();
    let stripped = processed.bytes.expect("stripping rewrites the file");
    assert!(!fixtures::has_gps(&stripped), "GPS is gone");
    assert!(
        fixtures::exif_fields(&stripped).is_empty(),
        "no Exif at all"
    );
    assert!(!fixtures::contains(&stripped, b"Exif\0\0"));
    assert!(!fixtures::contains(&stripped, b"xmpmeta"));
    assert!(!fixtures::contains(&stripped, COMMENT));
    assert!(!fixtures::contains(&stripped, TRAILER));
    assert!(!fixtures::contains(&stripped, b"Acme"));
    assert!(stripped.ends_with(&[0xFF, 0xD9]));
    assert!(
        fixtures::contains(&stripped, ICC),
        "the colour profile stays"
    );
    assert_eq!(
        (processed.format, processed.width, processed.height),
        (Format::Jpeg, 96, 64)
    );

    // Lossless: the very same pixels decode from both.
    let before = fixtures::decode(&original, ImageFormat::Jpeg).into_rgb8();
    let after = fixtures::decode(&stripped, ImageFormat::Jpeg).into_rgb8();
    assert!(fixtures::differing_pixels(&before, &after).is_empty());
}

#[test]
fn a_rotated_photo_keeps_only_its_orientation() {
    let (_, original) = tagged_jpeg(Some(6));
    assert_eq!(fixtures::exif_orientation(&original), Some(6));
    let processed = process_upload(&original, &strip(), &Limits::default()).unwrap();
    let stripped = processed.bytes.unwrap();
    assert!(!fixtures::has_gps(&stripped));
    assert_eq!(fixtures::exif_fields(&stripped), [exif::Tag::Orientation]);
    assert_eq!(fixtures::exif_orientation(&stripped), Some(6));
    assert_eq!(
        (processed.width, processed.height),
        (64, 96),
        "reported as displayed"
    );
}

#[test]
fn nothing_asked_leaves_the_upload_as_it_is() {
    let (_, original) = tagged_jpeg(None);
    let processed =
        process_upload(&original, &UploadOptions::default(), &Limits::default()).unwrap();
    assert_eq!(processed.bytes, None);
    assert_eq!(processed.mime(), "image/jpeg");
    assert_eq!(processed.blur_hash.len(), 28);
}

#[test]
fn png_text_and_exif_chunks_are_removed() {
    let pixels = fixtures::photo(50, 40);
    let png = fixtures::png_with_chunks(
        &fixtures::png_rgb(&pixels),
        &[
            (*b"tEXt", b"Comment\0shot at 12 Rue de Rivoli"),
            (*b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta/>"),
            (*b"eXIf", &fixtures::exif_with_gps(None)),
            (*b"tIME", &[7, 232, 6, 1, 12, 0, 0]),
        ],
    );
    assert!(fixtures::has_gps(&png));
    let stripped = process_upload(&png, &strip(), &Limits::default())
        .unwrap()
        .bytes
        .unwrap();
    assert!(!fixtures::has_gps(&stripped));
    for chunk in [b"tEXt", b"iTXt", b"eXIf", b"tIME"] {
        assert!(
            !fixtures::contains(&stripped, chunk),
            "{}",
            String::from_utf8_lossy(chunk)
        );
    }
    let after = fixtures::decode(&stripped, ImageFormat::Png).into_rgb8();
    assert!(fixtures::differing_pixels(&pixels, &after).is_empty());
}

#[test]
fn webp_exif_and_xmp_chunks_are_removed() {
    use img_parts::riff::{RiffChunk, RiffContent};
    use img_parts::{ImageEXIF, ImageICC};
    let pixels = fixtures::photo(50, 40);
    let mut webp = img_parts::webp::WebP::from_bytes(fixtures::webp(&pixels).into()).unwrap();
    webp.chunks_mut().push(RiffChunk::new(
        *b"XMP ",
        RiffContent::Data(b"<x:xmpmeta/>".as_slice().into()),
    ));
    // An ICC profile keeps the extended (VP8X) header after stripping; adding
    // it creates that header with the flags of the chunks present.
    webp.set_icc_profile(Some(b"not-a-real-profile".as_slice().into()));
    webp.set_exif(Some(fixtures::exif_with_gps(None).into()));
    let original = webp.encoder().bytes().to_vec();
    assert!(fixtures::has_gps(&original));
    let vp8x = original.windows(4).position(|w| w == b"VP8X").unwrap();
    assert_eq!(
        original[vp8x + 8] & 0b0010_1100,
        0b0010_1100,
        "ICC, EXIF and XMP announced"
    );

    let stripped = process_upload(&original, &strip(), &Limits::default())
        .unwrap()
        .bytes
        .unwrap();
    assert!(!fixtures::has_gps(&stripped));
    assert!(!fixtures::contains(&stripped, b"XMP ") && !fixtures::contains(&stripped, b"xmpmeta"));
    let vp8x = stripped
        .windows(4)
        .position(|w| w == b"VP8X")
        .expect("extended header kept");
    assert_eq!(
        stripped[vp8x + 8] & 0b0010_1100,
        0b0010_0000,
        "ICC flag only, no EXIF or XMP"
    );
    assert!(fixtures::contains(&stripped, b"not-a-real-profile"));
    let after = fixtures::decode(&stripped, ImageFormat::WebP).into_rgb8();
    assert!(fixtures::differing_pixels(&pixels, &after).is_empty());
}

#[test]
fn conversion_reencodes_with_the_quality_asked() {
    let (_, original) = tagged_jpeg(Some(6));
    let convert = |quality| UploadOptions {
        strip_metadata: false,
        format: Some(Format::Webp),
        quality,
    };
    let processed = process_upload(&original, &convert(Some(60)), &Limits::default()).unwrap();
    assert_eq!(
        (processed.format, processed.mime()),
        (Format::Webp, "image/webp")
    );
    let webp = processed.bytes.unwrap();
    let decoded = fixtures::decode(&webp, ImageFormat::WebP);
    assert_eq!(
        (decoded.width(), decoded.height()),
        (64, 96),
        "orientation applied to the pixels"
    );
    assert!(!fixtures::has_gps(&webp) && !fixtures::contains(&webp, b"xmpmeta"));
    let better = process_upload(&original, &convert(Some(100)), &Limits::default()).unwrap();
    assert!(better.bytes.unwrap().len() > webp.len());

    // Quality alone re-encodes in the same format.
    let requality = UploadOptions {
        quality: Some(30),
        ..UploadOptions::default()
    };
    let processed = process_upload(&original, &requality, &Limits::default()).unwrap();
    assert_eq!(processed.format, Format::Jpeg);
    fixtures::decode(&processed.bytes.unwrap(), ImageFormat::Jpeg);

    let to_png = UploadOptions {
        format: Some(Format::Png),
        ..UploadOptions::default()
    };
    let processed = process_upload(&original, &to_png, &Limits::default()).unwrap();
    fixtures::decode(&processed.bytes.unwrap(), ImageFormat::Png);
}

#[test]
fn blurhash_describes_the_image() {
    let red = fixtures::jpeg(
        &fixtures::halves(320, 240, [230, 10, 10], [230, 10, 10]),
        90,
    );
    let split = fixtures::png_rgb(&fixtures::halves(320, 240, [0, 0, 0], [255, 255, 255]));
    let limits = Limits::default();
    let red_hash = media::blurhash(&red, &limits).unwrap();
    let split_hash = media::blurhash(&split, &limits).unwrap();
    assert_eq!(red_hash.len(), 28);
    assert_eq!(split_hash.len(), 28);
    assert_ne!(red_hash, split_hash);
    // The same picture gives the same hash whichever way it was reached.
    let again = process_upload(&red, &UploadOptions::default(), &limits).unwrap();
    assert_eq!(again.blur_hash, red_hash);
}
