use image::{ImageFormat, RgbImage};
use media::{Format, Limits, MediaError, Transform, output, probe, render};

use crate::fixtures;

fn transform(query: &[(&str, &str)]) -> Transform {
    Transform::parse(query.iter().copied()).unwrap()
}

fn sources() -> Vec<(Format, Vec<u8>)> {
    let photo = fixtures::photo(640, 480);
    vec![
        (Format::Jpeg, fixtures::jpeg(&photo, 90)),
        (Format::Png, fixtures::png_rgb(&photo)),
        (Format::Webp, fixtures::webp(&photo)),
    ]
}

#[test]
fn w_100_gives_exactly_100_pixels_wide_from_every_format() {
    for (format, bytes) in sources() {
        let rendered = render(
            &bytes,
            &transform(&[("w", "100")]),
            None,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((rendered.width, rendered.height), (100, 75), "{format:?}");
        assert_eq!(
            rendered.format, format,
            "without f the source format is kept"
        );
        let image = fixtures::decode(&rendered.bytes, format.image_format_for_tests());
        assert_eq!(
            (image.width(), image.height()),
            (100, 75),
            "{format:?} decoded"
        );
    }
}

#[test]
fn every_output_format_decodes_back() {
    let (_, jpeg) = &sources()[0];
    for (name, format, image_format) in [
        ("jpeg", Format::Jpeg, ImageFormat::Jpeg),
        ("png", Format::Png, ImageFormat::Png),
        ("webp", Format::Webp, ImageFormat::WebP),
    ] {
        let t = transform(&[
            ("w", "160"),
            ("h", "160"),
            ("r", "fill"),
            ("f", name),
            ("q", "70"),
        ]);
        let rendered = render(jpeg, &t, None, &Limits::default()).unwrap();
        assert_eq!(rendered.format, format);
        assert_eq!(rendered.mime(), format.mime());
        let image = fixtures::decode(&rendered.bytes, image_format);
        assert_eq!((image.width(), image.height()), (160, 160), "{name}");
    }
}

#[test]
fn lossy_quality_changes_the_size() {
    let (_, jpeg) = &sources()[0];
    let size = |q: &str| {
        render(
            jpeg,
            &transform(&[("f", "webp"), ("q", q)]),
            None,
            &Limits::default(),
        )
        .unwrap()
        .bytes
        .len()
    };
    assert!(size("20") < size("95"), "q=20 should be smaller than q=95");
}

#[test]
fn large_jpegs_decoded_at_a_reduced_scale_keep_their_content() {
    // 1600 wide to 100 wide decodes at 1/8: red left, blue right must survive.
    let bytes = fixtures::jpeg(
        &fixtures::halves(1600, 1200, [220, 20, 20], [20, 20, 220]),
        92,
    );
    let image = rendered_png(&bytes, &[("w", "100")], (100, 75));
    let left = image.get_pixel(10, 37);
    let right = image.get_pixel(90, 37);
    assert!(left[0] > 180 && left[2] < 60, "left is red: {left:?}");
    assert!(right[2] > 180 && right[0] < 60, "right is blue: {right:?}");

    // The benchmark's case, smaller: a large JPEG to a 400-pixel WebP (1/4 scale).
    let webp = render(
        &bytes,
        &transform(&[("w", "400"), ("f", "webp")]),
        None,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        (webp.width, webp.height, webp.format),
        (400, 300, Format::Webp)
    );
    let image = fixtures::decode(&webp.bytes, ImageFormat::WebP).into_rgb8();
    assert!(image.get_pixel(40, 150)[0] > 180 && image.get_pixel(360, 150)[2] > 180);
}

/// `bytes` rendered as `query` asks (with `f=png`), asserted to be
/// `size`, decoded.
fn rendered_png(bytes: &[u8], query: &[(&str, &str)], size: (u32, u32)) -> RgbImage {
    let mut query = query.to_vec();
    query.push(("f", "png"));
    let rendered = render(bytes, &transform(&query), None, &Limits::default()).unwrap();
    assert_eq!((rendered.width, rendered.height), size);
    fixtures::decode(&rendered.bytes, ImageFormat::Png).into_rgb8()
}

/// `bytes` rendered into a 100×100 PNG with the resize `mode` and gravity `g`.
fn square(bytes: &[u8], mode: &str, g: &str) -> RgbImage {
    rendered_png(
        bytes,
        &[("w", "100"), ("h", "100"), ("r", mode), ("g", g)],
        (100, 100),
    )
}

#[test]
fn crop_takes_the_region_at_the_gravity() {
    let bytes = fixtures::png_rgb(&fixtures::halves(400, 200, [0, 0, 0], [255, 255, 255]));
    let crop = |g: &str| square(&bytes, "crop", g);
    assert!(crop("east").pixels().all(|p| p.0 == [255, 255, 255]));
    assert!(crop("w").pixels().all(|p| p.0 == [0, 0, 0]));
    let centre = crop("center");
    assert_eq!(centre.get_pixel(10, 50).0, [0, 0, 0]);
    assert_eq!(centre.get_pixel(90, 50).0, [255, 255, 255]);
}

#[test]
fn fill_covers_the_box_and_auto_gravity_finds_the_detail() {
    // Flat grey, with a striped patch near the right edge.
    let image = RgbImage::from_fn(600, 200, |x, y| {
        if (450..590).contains(&x) && (x / 3 + y / 3) % 2 == 0 {
            image::Rgb([0, 0, 0])
        } else {
            image::Rgb([128, 128, 128])
        }
    });
    let bytes = fixtures::png_rgb(&image);
    let fill = |g: &str| {
        let out = square(&bytes, "fill", g);
        out.pixels().filter(|p| p[0] < 100).count()
    };
    assert_eq!(fill("center"), 0, "the centre of the image is flat");
    assert!(
        fill("auto") > 1000,
        "auto gravity moves onto the striped patch"
    );
    assert!(fill("e") > 1000);
}

#[test]
fn exif_orientation_is_applied() {
    // Stored 40×20, Exif orientation 6: displayed 20×40.
    let stored = fixtures::halves(40, 20, [250, 0, 0], [0, 0, 250]);
    let exif = [b"Exif\0\0".as_slice(), &fixtures::exif_with_gps(Some(6))].concat();
    let bytes = fixtures::with_jpeg_segment(&fixtures::jpeg(&stored, 95), 0xE1, &exif);
    let info = probe(&bytes).unwrap();
    assert_eq!(
        (info.format, info.width, info.height),
        (Format::Jpeg, 20, 40)
    );
    let out = rendered_png(&bytes, &[], (20, 40));
    // Rotating 90° clockwise puts the stored left (red) half on top.
    assert!(out.get_pixel(10, 5)[0] > 200, "top is red");
    assert!(out.get_pixel(10, 35)[2] > 200, "bottom is blue");

    // The same through a reduced-scale decode: 1600×800 stored, 800×1600 shown.
    let stored = fixtures::halves(1600, 800, [250, 0, 0], [0, 0, 250]);
    let bytes = fixtures::with_jpeg_segment(&fixtures::jpeg(&stored, 95), 0xE1, &exif);
    let out = rendered_png(&bytes, &[("w", "100")], (100, 200));
    assert!(out.get_pixel(50, 20)[0] > 200 && out.get_pixel(50, 180)[2] > 200);
}

#[test]
fn webp_is_limited_to_2000_pixels_as_tuzzle_documents() {
    let bytes = fixtures::jpeg(&fixtures::photo(100, 20), 90);
    let limits = Limits::default();
    let refused = render(
        &bytes,
        &transform(&[("w", "3000"), ("h", "100"), ("r", "scale"), ("f", "webp")]),
        None,
        &limits,
    );
    match refused {
        Err(MediaError::InvalidModifiers(error)) => assert!(error.details().contains_key("f")),
        other => panic!("expected invalid modifiers, got {other:?}"),
    }
    let fitted = render(
        &bytes,
        &transform(&[("w", "3000"), ("f", "webp")]),
        None,
        &limits,
    )
    .unwrap();
    assert_eq!(
        (fitted.width, fitted.height, fitted.format),
        (2000, 400, Format::Webp)
    );
    let negotiated = transform(&[("w", "3000")]).negotiated(Some("image/webp"), Format::Jpeg);
    let fallback = render(&bytes, &negotiated, None, &limits).unwrap();
    assert_eq!((fallback.width, fallback.format), (3000, Format::Jpeg));
    fixtures::decode(&fallback.bytes, ImageFormat::Jpeg);
}

#[test]
fn broken_inputs_are_errors_not_panics() {
    let jpeg = fixtures::jpeg(&fixtures::photo(64, 64), 90);
    let truncated = &jpeg[..jpeg.len() / 3];
    assert!(matches!(
        render(
            truncated,
            &transform(&[("w", "10")]),
            None,
            &Limits::default()
        ),
        Err(MediaError::Malformed(_))
    ));
    assert!(matches!(
        render(
            b"hello world",
            &Transform::default(),
            None,
            &Limits::default()
        ),
        Err(MediaError::Unsupported)
    ));
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    assert!(matches!(probe(gif), Err(MediaError::Unsupported)));
}

#[test]
fn decoders_stay_within_the_allocation_limit() {
    let png = fixtures::png_rgb(&fixtures::photo(300, 300));
    let tight = Limits {
        max_pixels: 1_000_000,
        max_alloc: 10_000,
    };
    assert!(matches!(
        render(&png, &Transform::default(), None, &tight),
        Err(MediaError::MemoryLimit)
    ));
    let jpeg = fixtures::jpeg(&fixtures::photo(300, 300), 90);
    assert!(matches!(
        render(&jpeg, &transform(&[("w", "100")]), None, &tight),
        Err(MediaError::MemoryLimit)
    ));
    assert!(matches!(
        render(&jpeg, &Transform::default(), None, &tight),
        Err(MediaError::MemoryLimit)
    ));
}

#[test]
fn rgba_sources_keep_transparency_unless_the_output_is_jpeg() {
    let rgba = image::RgbaImage::from_fn(64, 64, |x, _| {
        image::Rgba([0, 0, 0, if x < 32 { 0 } else { 255 }])
    });
    let bytes = fixtures::png_rgba(&rgba);
    let png = render(&bytes, &transform(&[("w", "32")]), None, &Limits::default()).unwrap();
    let decoded = fixtures::decode(&png.bytes, ImageFormat::Png);
    assert!(decoded.color().has_alpha());
    assert_eq!(decoded.to_rgba8().get_pixel(2, 16)[3], 0);
    let jpeg = render(
        &bytes,
        &transform(&[("f", "jpeg")]),
        None,
        &Limits::default(),
    )
    .unwrap();
    let flattened = fixtures::decode(&jpeg.bytes, ImageFormat::Jpeg).into_rgb8();
    assert!(
        flattened.get_pixel(5, 5)[0] > 240,
        "transparent areas become white"
    );
    let webp = render(
        &bytes,
        &transform(&[("f", "webp")]),
        None,
        &Limits::default(),
    )
    .unwrap();
    let decoded = fixtures::decode(&webp.bytes, ImageFormat::WebP);
    assert_eq!(
        decoded.to_rgba8().get_pixel(5, 5)[3],
        0,
        "lossy WebP keeps alpha"
    );
}

trait ForTests {
    fn image_format_for_tests(self) -> ImageFormat;
}

impl ForTests for Format {
    fn image_format_for_tests(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::Webp => ImageFormat::WebP,
        }
    }
}

#[test]
fn probe_needs_only_the_head_of_the_file() {
    for (format, bytes) in sources() {
        assert!(
            bytes.len() > 8192,
            "{format:?} fixture is larger than its head"
        );
        let info = probe(&bytes[..4096]).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!((info.format, info.width, info.height), (format, 640, 480));
    }
}

#[test]
fn output_tells_what_render_gives_without_decoding() {
    let bytes = fixtures::jpeg(&fixtures::photo(800, 200), 90);
    let info = probe(&bytes).unwrap();
    let limits = Limits::default();
    let cases = [
        transform(&[("w", "100")]),
        transform(&[("w", "50"), ("h", "50"), ("r", "fill"), ("f", "png")]),
        transform(&[("w", "300"), ("h", "90"), ("r", "crop"), ("f", "webp")]),
        transform(&[]).negotiated(Some("image/webp"), Format::Jpeg),
        transform(&[("w", "120")]).negotiated(Some("image/webp"), Format::Jpeg),
        transform(&[("w", "3000"), ("f", "webp")]),
    ];
    for t in cases {
        let planned = output(info, &t).unwrap();
        let rendered = render(&bytes, &t, None, &limits).unwrap();
        assert_eq!(
            (planned.format, planned.width, planned.height),
            (rendered.format, rendered.width, rendered.height),
            "{t:?}"
        );
    }
    // The refusals render would make, made first.
    let refused = output(
        info,
        &transform(&[("w", "2400"), ("h", "100"), ("r", "scale"), ("f", "webp")]),
    );
    assert!(refused.unwrap_err().details().contains_key("f"));
}
