use media::{Family, Format, sniff};

use crate::fixtures;

#[test]
fn a_png_named_jpg_is_judged_by_its_content() {
    let png = fixtures::png_rgb(&fixtures::photo(8, 8));
    let sniffed = sniff(&png).expect("a PNG is recognised");
    assert_eq!(sniffed.mime, "image/png");
    assert_eq!(sniffed.extension, "png");
    assert_eq!(sniffed.family, Family::Image);
    assert_eq!(sniffed.format(), Some(Format::Png));
    assert!(
        !sniffed.matches_name("holiday.jpg"),
        "the .jpg name does not match PNG content"
    );
    assert!(sniffed.matches_name("holiday.PNG"));
}

#[test]
fn jpeg_and_webp_are_recognised_with_their_aliases() {
    let jpeg = fixtures::jpeg(&fixtures::photo(8, 8), 90);
    let sniffed = sniff(&jpeg).unwrap();
    assert_eq!((sniffed.mime, sniffed.extension), ("image/jpeg", "jpg"));
    assert!(sniffed.matches_name("a.jpeg") && sniffed.matches_name("a.JPG"));
    assert!(!sniffed.matches_name("a.webp") && !sniffed.matches_name("jpg"));

    let webp = fixtures::webp(&fixtures::photo(8, 8));
    let sniffed = sniff(&webp).unwrap();
    assert_eq!(
        (sniffed.mime, sniffed.format()),
        ("image/webp", Some(Format::Webp))
    );
}

#[test]
fn other_families_are_told_apart() {
    let pdf = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<<>>\nendobj\n";
    assert_eq!(sniff(pdf).unwrap().family, Family::Document);
    assert_eq!(sniff(pdf).unwrap().extension, "pdf");

    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00\x00\x00";
    assert_eq!(sniff(zip).unwrap().family, Family::Archive);

    let mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom";
    assert_eq!(sniff(mp4).unwrap().family, Family::Video);

    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    let sniffed = sniff(gif).unwrap();
    assert_eq!((sniffed.family, sniffed.format()), (Family::Image, None));
}

#[test]
fn svg_is_recognised_even_when_named_png() {
    let svg = b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!-- logo -->\n<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>";
    let sniffed = sniff(svg).unwrap();
    assert_eq!((sniffed.mime, sniffed.extension), ("image/svg+xml", "svg"));
    assert!(!sniffed.matches_name("logo.png"));
    assert_eq!(sniff(b"<svg width=\"1\"></svg>").unwrap().extension, "svg");
}

#[test]
fn plain_text_is_not_recognised() {
    assert_eq!(sniff(b"name,email\nada,ada@example.com\n"), None);
    assert_eq!(sniff(b""), None);
}
