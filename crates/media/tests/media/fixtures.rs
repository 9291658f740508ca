//! Images made in code: no binary fixtures in the repository.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageEncoder, ImageFormat, Rgb, RgbImage, RgbaImage};

/// A smooth colour gradient with some texture, like a photo.
pub fn photo(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let ripple = ((x * 7 + y * 13) % 17) as u8;
        Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            128u8.wrapping_add(ripple),
        ])
    })
}

/// One colour on the left half, another on the right.
pub fn halves(width: u32, height: u32, left: [u8; 3], right: [u8; 3]) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 { Rgb(left) } else { Rgb(right) }
    })
}

pub fn jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    write_rgb(JpegEncoder::new_with_quality(&mut out, quality), image);
    out
}

fn write_rgb(encoder: impl ImageEncoder, image: &RgbImage) {
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
}

pub fn png(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            image.as_bytes(),
            image.width(),
            image.height(),
            image.color().into(),
        )
        .unwrap();
    out
}

pub fn png_rgb(image: &RgbImage) -> Vec<u8> {
    png(&DynamicImage::ImageRgb8(image.clone()))
}

pub fn png_rgba(image: &RgbaImage) -> Vec<u8> {
    png(&DynamicImage::ImageRgba8(image.clone()))
}

/// A lossless WebP (image's own encoder, independent of the crate's libwebp).
pub fn webp(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    write_rgb(WebPEncoder::new_lossless(&mut out), image);
    out
}

/// Decodes with the `image` crate, checking the format by signature.
pub fn decode(bytes: &[u8], expected: ImageFormat) -> DynamicImage {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap();
    assert_eq!(reader.format(), Some(expected), "unexpected output format");
    reader.decode().unwrap()
}

/// Inserts a segment right after a JPEG's SOI marker.
pub fn with_jpeg_segment(jpeg: &[u8], marker: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&u16::try_from(contents.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(contents);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// An Exif (TIFF, little-endian) block: IFD0 with Make, optionally
/// Orientation, and a GPS IFD holding latitude and longitude.
pub fn exif_with_gps(orientation: Option<u16>) -> Vec<u8> {
    let mut ifd0: Vec<(u16, u16, u32, Vec<u8>)> = vec![(0x010F, 2, 6, b"Acme\0\0".to_vec())];
    if let Some(o) = orientation {
        ifd0.push((0x0112, 3, 1, o.to_le_bytes().to_vec()));
    }
    ifd0.push((0x8825, 4, 1, Vec::new())); // GPS IFD pointer, patched below
    let rational = |values: [(u32, u32); 3]| {
        values
            .iter()
            .flat_map(|(n, d)| [n.to_le_bytes(), d.to_le_bytes()].concat())
            .collect::<Vec<u8>>()
    };
    let gps: Vec<(u16, u16, u32, Vec<u8>)> = vec![
        (0x0001, 2, 2, b"N\0".to_vec()),
        (0x0002, 5, 3, rational([(48, 1), (51, 1), (2904, 100)])),
        (0x0003, 2, 2, b"E\0".to_vec()),
        (0x0004, 5, 3, rational([(2, 1), (17, 1), (4000, 100)])),
    ];
    let ifd_size = |n: usize| 2 + 12 * n + 4;
    let ifd0_at = 8u32;
    let gps_at = ifd0_at + ifd_size(ifd0.len()) as u32;
    let mut data_at = gps_at + ifd_size(gps.len()) as u32;
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&ifd0_at.to_le_bytes());
    let mut data = Vec::new();
    let mut write_ifd = |tiff: &mut Vec<u8>, entries: &[(u16, u16, u32, Vec<u8>)]| {
        tiff.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (tag, kind, count, value) in entries {
            tiff.extend_from_slice(&tag.to_le_bytes());
            tiff.extend_from_slice(&kind.to_le_bytes());
            tiff.extend_from_slice(&count.to_le_bytes());
            if *tag == 0x8825 {
                tiff.extend_from_slice(&gps_at.to_le_bytes());
            } else if value.len() <= 4 {
                let mut inline = value.clone();
                inline.resize(4, 0);
                tiff.extend_from_slice(&inline);
            } else {
                tiff.extend_from_slice(&data_at.to_le_bytes());
                data.extend_from_slice(value);
                data_at += value.len() as u32;
            }
        }
        tiff.extend_from_slice(&0u32.to_le_bytes());
    };
    write_ifd(&mut tiff, &ifd0);
    write_ifd(&mut tiff, &gps);
    tiff.extend_from_slice(&data);
    tiff
}

/// The Exif fields an independent reader (kamadak-exif) finds in a JPEG,
/// PNG or WebP file; empty when there is no Exif.
pub fn exif_fields(file: &[u8]) -> Vec<exif::Tag> {
    match exif::Reader::new().read_from_container(&mut Cursor::new(file)) {
        Ok(exif) => exif.fields().map(|f| f.tag).collect(),
        Err(_) => Vec::new(),
    }
}

pub fn exif_orientation(file: &[u8]) -> Option<u32> {
    let exif = exif::Reader::new()
        .read_from_container(&mut Cursor::new(file))
        .ok()?;
    exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?
        .value
        .get_uint(0)
}

pub fn has_gps(file: &[u8]) -> bool {
    exif_fields(file).iter().any(|tag| {
        matches!(
            *tag,
            exif::Tag::GPSLatitude | exif::Tag::GPSLongitude | exif::Tag::GPSLatitudeRef
        )
    })
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A PNG with extra chunks inserted before the first IDAT.
pub fn png_with_chunks(png: &[u8], chunks: &[([u8; 4], &[u8])]) -> Vec<u8> {
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap() - 4;
    let mut out = png[..idat].to_vec();
    for (kind, contents) in chunks {
        out.extend_from_slice(&u32::try_from(contents.len()).unwrap().to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(contents);
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(contents);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    out.extend_from_slice(&png[idat..]);
    out
}

/// CRC-32 (IEEE), as PNG chunks carry it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Pixels of two same-sized RGB images that differ.
pub fn differing_pixels(a: &RgbImage, b: &RgbImage) -> Vec<(u32, u32)> {
    assert_eq!(a.dimensions(), b.dimensions());
    a.enumerate_pixels()
        .filter(|(x, y, p)| b.get_pixel(*x, *y) != *p)
        .map(|(x, y, _)| (x, y))
        .collect()
}
