use image::{ImageFormat, RgbImage, RgbaImage};
use media::{Compass, Limits, Transform, Watermark, render};

use crate::fixtures;

fn red_mark() -> Vec<u8> {
    fixtures::png_rgba(&RgbaImage::from_pixel(
        80,
        40,
        image::Rgba([255, 0, 0, 255]),
    ))
}

fn render_png(source: &[u8], watermark: Option<&Watermark>, query: &[(&str, &str)]) -> RgbImage {
    let t = Transform::parse(query.iter().copied()).unwrap();
    let rendered = render(source, &t, watermark, &Limits::default()).unwrap();
    fixtures::decode(&rendered.bytes, ImageFormat::Png).into_rgb8()
}

#[test]
fn the_watermark_lands_at_its_position_and_nowhere_else() {
    let original = RgbImage::from_pixel(400, 300, image::Rgb([40, 90, 160]));
    let source = fixtures::png_rgb(&original);
    let mark = Watermark::decode(&red_mark(), Compass::SouthEast, 0.5, &Limits::default()).unwrap();
    let marked = render_png(&source, Some(&mark), &[("f", "png")]);

    let changed = fixtures::differing_pixels(&original, &marked);
    assert!(!changed.is_empty(), "the watermark is visible");
    let (min_x, max_x) = (
        changed.iter().map(|p| p.0).min().unwrap(),
        changed.iter().map(|p| p.0).max().unwrap(),
    );
    let (min_y, max_y) = (
        changed.iter().map(|p| p.1).min().unwrap(),
        changed.iter().map(|p| p.1).max().unwrap(),
    );
    // A quarter of the width (100 px), its shape kept (50 px), in the
    // south-east corner with a small margin.
    assert_eq!((max_x - min_x + 1, max_y - min_y + 1), (100, 50));
    assert!(
        min_x > 200 && min_y > 150,
        "south-east: starts at ({min_x}, {min_y})"
    );
    assert!(
        (1..=12).contains(&(399 - max_x)) && (1..=12).contains(&(299 - max_y)),
        "margin"
    );
    assert_eq!(
        changed.len(),
        100 * 50,
        "every pixel under it changed, none elsewhere"
    );

    // Half opacity: half-way between the original and red.
    let p = marked.get_pixel((min_x + max_x) / 2, (min_y + max_y) / 2);
    assert!(
        (140..=155).contains(&p[0]) && (40..=50).contains(&p[1]),
        "blended: {p:?}"
    );
}

#[test]
fn position_and_opacity_are_honoured() {
    let original = RgbImage::from_pixel(200, 200, image::Rgb([255, 255, 255]));
    let source = fixtures::png_rgb(&original);
    let north_west =
        Watermark::decode(&red_mark(), Compass::NorthWest, 1.0, &Limits::default()).unwrap();
    let marked = render_png(&source, Some(&north_west), &[("f", "png")]);
    let changed = fixtures::differing_pixels(&original, &marked);
    assert!(changed.iter().all(|(x, y)| *x < 100 && *y < 100));
    assert_eq!(
        marked.get_pixel(changed[0].0, changed[0].1).0,
        [255, 0, 0],
        "opaque"
    );

    let invisible =
        Watermark::decode(&red_mark(), Compass::Center, 0.0, &Limits::default()).unwrap();
    assert!(
        fixtures::differing_pixels(
            &original,
            &render_png(&source, Some(&invisible), &[("f", "png")])
        )
        .is_empty()
    );
}

#[test]
fn the_watermark_scales_with_the_output() {
    let original = fixtures::photo(800, 600);
    let source = fixtures::jpeg(&original, 90);
    let mark = Watermark::decode(&red_mark(), Compass::SouthWest, 0.8, &Limits::default()).unwrap();
    let query = [("w", "200"), ("f", "png")];
    let plain = render_png(&source, None, &query);
    let marked = render_png(&source, Some(&mark), &query);
    assert_eq!(marked.dimensions(), (200, 150));
    let changed = fixtures::differing_pixels(&plain, &marked);
    let width =
        changed.iter().map(|p| p.0).max().unwrap() - changed.iter().map(|p| p.0).min().unwrap() + 1;
    assert_eq!(width, 50, "a quarter of the 200-pixel output");
    assert!(
        changed.iter().all(|(x, y)| *x < 100 && *y > 75),
        "south-west"
    );
    let (x, y) = changed[changed.len() / 2];
    assert!(
        marked.get_pixel(x, y)[0] > plain.get_pixel(x, y)[0],
        "redder under the watermark"
    );
}
