//! Removing metadata without re-encoding: the image data is copied byte for
//! byte, only the containers' metadata segments and chunks go.
//!
//! Kept: what decoding and colour need (JPEG tables, JFIF without its
//! thumbnail, the Adobe colour-transform segment, ICC profiles, PNG colour
//! chunks, WebP's bitstream, alpha and animation chunks). Removed: Exif
//! (GPS, camera, dates, embedded thumbnails), XMP, IPTC/Photoshop, comments,
//! PNG text and time chunks, MPF's extra pictures and anything after the end
//! of the image. A rotated photo's orientation survives as a minimal Exif
//! block holding nothing but the orientation, so that it still displays
//! upright; the CDN's transforms apply it to the pixels.

use bytes::Bytes;
use image::metadata::Orientation;
use img_parts::ImageEXIF;
use img_parts::jpeg::{Jpeg, JpegSegment};
use img_parts::png::Png;
use img_parts::riff::RiffContent;
use img_parts::webp::WebP;

use crate::probe::Header;
use crate::{Format, MediaError};

pub(crate) fn strip(bytes: &[u8], header: &Header) -> Result<Vec<u8>, MediaError> {
    let orientation_exif = (header.orientation != Orientation::NoTransforms)
        .then(|| Bytes::from(orientation_only_exif(header.orientation)));
    let input = Bytes::copy_from_slice(bytes);
    match header.format {
        Format::Jpeg => strip_jpeg(input, orientation_exif),
        Format::Png => {
            let mut png = Png::from_bytes(input).map_err(malformed)?;
            png.chunks_mut()
                .retain(|chunk| PNG_KEPT.contains(&&chunk.kind()));
            png.set_exif(orientation_exif);
            Ok(png.encoder().bytes().to_vec())
        }
        Format::Webp => {
            let mut webp = WebP::from_bytes(input).map_err(malformed)?;
            webp.chunks_mut()
                .retain(|chunk| WEBP_KEPT.contains(&&chunk.id()));
            // Also brings the VP8X flags in line with the chunks.
            webp.set_exif(orientation_exif);
            clear_xmp_flag(&mut webp);
            Ok(webp.encoder().bytes().to_vec())
        }
    }
}

/// PNG chunks that describe the pixels; everything else (`tEXt`, `zTXt`,
/// `iTXt` holding XMP, `eXIf`, `tIME`, private chunks) goes.
const PNG_KEPT: &[&[u8; 4]] = &[
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
    b"cICP", b"mDCv", b"cLLi", b"bKGD", b"pHYs", b"acTL", b"fcTL", b"fdAT",
];

/// WebP chunks that describe the pixels; `EXIF`, `XMP ` and unknown ones go.
const WEBP_KEPT: &[&[u8; 4]] = &[
    b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ICCP", b"ANIM", b"ANMF",
];

const APP0: u8 = 0xE0;
const APP2: u8 = 0xE2;
const APP14: u8 = 0xEE;
const COM: u8 = 0xFE;

fn strip_jpeg(input: Bytes, orientation_exif: Option<Bytes>) -> Result<Vec<u8>, MediaError> {
    let mut jpeg = Jpeg::from_bytes(input).map_err(malformed)?;
    let mut kept = Vec::with_capacity(jpeg.segments().len());
    for segment in jpeg.segments() {
        let contents = segment.contents();
        let keep = match segment.marker() {
            APP0 if contents.starts_with(b"JFIF\0") && contents.len() >= 14 => {
                // JFIF without its thumbnail (which may show what was cropped out).
                let mut jfif = contents[..14].to_vec();
                jfif[12] = 0;
                jfif[13] = 0;
                kept.push(JpegSegment::new_with_contents(APP0, Bytes::from(jfif)));
                continue;
            }
            APP2 => contents.starts_with(b"ICC_PROFILE\0"),
            APP14 => contents.starts_with(b"Adobe"),
            0xE0..=0xEF | COM => false,
            _ => true,
        };
        if keep {
            kept.push(segment.clone());
        }
    }
    *jpeg.segments_mut() = kept;
    jpeg.set_exif(orientation_exif);
    // img-parts keeps everything from the first scan on as it was: later
    // scans, but also segments between them and whatever follows the end of
    // the image (MPF's extra pictures carry their own Exif). The header's
    // length, as written, tells where the first scan's data begins.
    let header_len = 2 + jpeg.segments().iter().map(JpegSegment::len).sum::<usize>();
    let encoded = jpeg.encoder().bytes();
    let (head, scans) = encoded.split_at(header_len.min(encoded.len()));
    let mut out = Vec::with_capacity(encoded.len());
    out.extend_from_slice(head);
    clean_scans(scans, &mut out);
    Ok(out)
}

/// Copies entropy-coded data and the segments between scans, dropping
/// application and comment segments, and stops after the end-of-image marker.
fn clean_scans(mut data: &[u8], out: &mut Vec<u8>) {
    while let Some(at) = data.iter().position(|b| *b == 0xFF) {
        out.extend_from_slice(&data[..at]);
        data = &data[at..];
        let Some(&marker) = data.get(1) else {
            break;
        };
        match marker {
            // Stuffed 0xFF, or a restart marker: part of the entropy data.
            0x00 | 0xD0..=0xD7 => {
                out.extend_from_slice(&data[..2]);
                data = &data[2..];
            }
            // Fill byte before a marker.
            0xFF => data = &data[1..],
            0xD9 => {
                out.extend_from_slice(&data[..2]);
                return;
            }
            _ => {
                let Some(length) = data
                    .get(2..4)
                    .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                else {
                    break;
                };
                let end = (2 + length).min(data.len());
                if !matches!(marker, 0xE0..=0xEF | COM) {
                    out.extend_from_slice(&data[..end]);
                }
                data = &data[end..];
            }
        }
    }
    // A truncated file: keep its data, then close it.
    out.extend_from_slice(data);
    out.extend_from_slice(&[0xFF, 0xD9]);
}

/// img-parts leaves VP8X's XMP flag as it was; the chunk is gone.
fn clear_xmp_flag(webp: &mut WebP) {
    const XMP_FLAG: u8 = 0b0000_0100;
    for chunk in webp.chunks_mut() {
        if chunk.id() == *b"VP8X"
            && let RiffContent::Data(data) = chunk.content_mut()
            && data.first().is_some_and(|flags| flags & XMP_FLAG != 0)
        {
            let mut fixed = data.to_vec();
            fixed[0] &= !XMP_FLAG;
            *data = Bytes::from(fixed);
        }
    }
}

/// A TIFF-structured Exif block with one entry: the orientation.
fn orientation_only_exif(orientation: Orientation) -> Vec<u8> {
    let mut exif = Vec::with_capacity(26);
    exif.extend_from_slice(b"II*\0");
    exif.extend_from_slice(&8u32.to_le_bytes()); // IFD0 right after the header
    exif.extend_from_slice(&1u16.to_le_bytes()); // one entry
    exif.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    exif.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    exif.extend_from_slice(&1u32.to_le_bytes()); // one value
    exif.extend_from_slice(&u16::from(orientation.to_exif()).to_le_bytes());
    exif.extend_from_slice(&[0, 0]); // value padding
    exif.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    exif
}

fn malformed(error: img_parts::Error) -> MediaError {
    MediaError::Malformed(error.to_string())
}
