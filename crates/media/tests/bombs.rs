//! Decompression bombs: headers that claim 50000×50000 pixels are refused
//! before any pixel buffer exists. A binary of its own, because it measures
//! the whole process's heap with a counting allocator.

use std::io::Cursor;

use image::{ImageEncoder, RgbImage};
use media::{Compass, Limits, MediaError, Transform, UploadOptions, Watermark, probe};
use peak_alloc::PeakAlloc;

// The main test binary's fixtures (this one uses only some of them).
#[path = "media/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const CLAIMED: u32 = 50_000;

/// A real 16×16 JPEG whose frame header then claims 50000×50000.
fn jpeg_bomb() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .write_image(&[128; 16 * 16 * 3], 16, 16, image::ExtendedColorType::Rgb8)
        .unwrap();
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0");
    // marker (2), length (2), precision (1), then height and width.
    bytes[sof + 5..sof + 7].copy_from_slice(&(CLAIMED as u16).to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&(CLAIMED as u16).to_be_bytes());
    bytes
}

/// A PNG whose IHDR claims 50000×50000, with a few bytes of image data.
fn png_bomb() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(Cursor::new(&mut bytes))
        .write_image(&[0; 8 * 8], 8, 8, image::ExtendedColorType::L8)
        .unwrap();
    bytes[16..20].copy_from_slice(&CLAIMED.to_be_bytes());
    bytes[20..24].copy_from_slice(&CLAIMED.to_be_bytes());
    let crc = fixtures::crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// Runs `f` and returns how far the heap grew above where it started.
fn heap_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let result = f();
    (result, HEAP.peak_usage().saturating_sub(before))
}

type Attempt<'a> = Box<dyn Fn() -> Result<(), MediaError> + 'a>;

fn assert_refused(bomb: &[u8]) {
    let info = probe(bomb).expect("the header is readable");
    assert_eq!((info.width, info.height), (CLAIMED, CLAIMED));
    let limits = Limits::default();
    assert!(matches!(
        limits.check(&info),
        Err(MediaError::TooManyPixels { .. })
    ));

    let t = Transform::parse([("w", "100")]).unwrap();
    let attempts: [(&str, Attempt<'_>); 4] = [
        (
            "render",
            Box::new(|| media::render(bomb, &t, None, &limits).map(drop)),
        ),
        (
            "process_upload",
            Box::new(|| {
                let options = UploadOptions {
                    strip_metadata: true,
                    ..UploadOptions::default()
                };
                media::process_upload(bomb, &options, &limits).map(drop)
            }),
        ),
        (
            "blurhash",
            Box::new(|| media::blurhash(bomb, &limits).map(drop)),
        ),
        (
            "watermark",
            Box::new(|| Watermark::decode(bomb, Compass::Center, 0.5, &limits).map(drop)),
        ),
    ];
    for (name, attempt) in attempts {
        let (outcome, grew) = heap_growth(attempt);
        match outcome {
            Err(MediaError::TooManyPixels {
                width,
                height,
                max_pixels,
            }) => {
                assert_eq!(
                    (width, height, max_pixels),
                    (CLAIMED, CLAIMED, limits.max_pixels),
                    "{name}"
                );
            }
            other => panic!("{name}: expected TooManyPixels, got {other:?}"),
        }
        // 50000×50000 RGB would be 7.5 GB; refusing takes a few kilobytes.
        eprintln!("{name}: refused, the heap grew by {grew} bytes");
        assert!(grew < 1 << 20, "{name} grew the heap by {grew} bytes");
    }
}

#[test]
fn a_jpeg_claiming_50000_by_50000_is_refused_without_allocating() {
    assert_refused(&jpeg_bomb());
}

#[test]
fn a_png_claiming_50000_by_50000_is_refused_without_allocating() {
    assert_refused(&png_bomb());
}

#[test]
fn the_pixel_limit_is_configurable() {
    let bytes = jpeg_bomb();
    let info = probe(&bytes).unwrap();
    let generous = Limits {
        max_pixels: u64::from(CLAIMED) * u64::from(CLAIMED),
        ..Limits::default()
    };
    assert!(generous.check(&info).is_ok());
    let strict = Limits {
        max_pixels: 255,
        ..Limits::default()
    };
    let small = {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(
                RgbImage::new(16, 16).as_raw(),
                16,
                16,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    };
    assert!(matches!(
        media::render(&small, &Transform::default(), None, &strict),
        Err(MediaError::TooManyPixels {
            width: 16,
            height: 16,
            max_pixels: 255
        })
    ));
}
