use media::{Compass, Format, Gravity, Resize, Transform, negotiate};

#[test]
fn invalid_modifiers_report_every_field() {
    let error = Transform::parse([
        ("w", "0"),
        ("h", "abc"),
        ("r", "zoom"),
        ("g", "up"),
        ("f", "avif"),
        ("q", "101"),
        ("expires", "123"),
    ])
    .unwrap_err();
    let details = error.details();
    assert_eq!(
        details.keys().copied().collect::<Vec<_>>(),
        ["f", "g", "h", "q", "r", "w"]
    );
    assert_eq!(details["w"], "Must be an integer between 1 and 4096.");
    assert_eq!(details["h"], "Must be an integer between 1 and 4096.");
    assert_eq!(details["q"], "Must be an integer between 1 and 100.");
    assert!(
        details["f"].contains("avif") && details["f"].contains("not supported"),
        "{}",
        details["f"]
    );
    assert!(details["r"].contains("scale, fit, fill, crop, thumb"));
    assert_eq!(
        error.to_string().split(';').next(),
        Some("Invalid modifiers")
    );
}

#[test]
fn sizes_are_bounded_and_plain_integers() {
    for bad in ["4097", "100000", "-1", "1.5", "100px", "", " 100", "+5"] {
        let error = Transform::parse([("w", bad)]).unwrap_err();
        assert!(
            error.details().contains_key("w"),
            "w={bad:?} should be refused"
        );
    }
    assert_eq!(
        Transform::parse([("w", "4096")]).unwrap().width(),
        Some(4096)
    );
    assert_eq!(Transform::parse([("q", "1")]).unwrap().quality(), Some(1));
}

#[test]
fn repeated_parameters_and_crop_without_a_box_are_refused() {
    let error = Transform::parse([("w", "10"), ("w", "20")]).unwrap_err();
    assert!(error.details().contains_key("w"));
    let error = Transform::parse([("w", "10"), ("r", "crop")]).unwrap_err();
    assert!(error.details()["r"].contains("both w and h"));
}

#[test]
fn values_parse_with_their_aliases_and_defaults() {
    let t = Transform::parse([
        ("g", "NorthEast"),
        ("f", "JPG"),
        ("r", "fill"),
        ("w", "5"),
        ("h", "5"),
    ])
    .unwrap();
    assert_eq!(t.gravity(), Gravity::Compass(Compass::NorthEast));
    assert_eq!(t.format(), Some(Format::Jpeg));
    assert_eq!(t.resize(), Resize::Fill);
    assert_eq!(
        Transform::parse([("g", "face")]).unwrap().gravity(),
        Gravity::Auto
    );
    assert_eq!(
        Transform::parse([("g", "se")]).unwrap().gravity(),
        Gravity::Compass(Compass::SouthEast)
    );

    let defaults = Transform::parse([("api_key", "sk_x"), ("signature", "abc")]).unwrap();
    assert!(defaults.is_identity());
    assert_eq!(defaults.resize(), Resize::Fit);
    assert_eq!(defaults.gravity(), Gravity::Compass(Compass::Center));
    assert_eq!(
        Transform::parse([("r", "thumb")]).unwrap().gravity(),
        Gravity::Auto
    );
}

#[test]
fn variant_keys_are_stable_and_canonical() {
    let a = Transform::parse([("w", "100"), ("f", "webp"), ("q", "80")]).unwrap();
    let b = Transform::parse([
        ("q", "80"),
        ("f", "webp"),
        ("w", "100"),
        ("r", "fit"),
        ("g", "center"),
    ])
    .unwrap();
    assert_eq!(a.variant_key(), "w100_h0_rfit_gc_fwebp_q80");
    assert_eq!(a.variant_key(), b.variant_key());
    assert_eq!(Transform::default().variant_key(), "w0_h0_rfit_gc_fsrc_q0");
    let negotiated = Transform::parse([("w", "100")])
        .unwrap()
        .negotiated(Some("image/webp"), Format::Jpeg);
    assert_eq!(negotiated.variant_key(), "w100_h0_rfit_gc_nwebp_q0");
    assert!(negotiated.format_negotiated());
    // An explicit f wins over the Accept header.
    let explicit = Transform::parse([("f", "png")])
        .unwrap()
        .negotiated(Some("image/webp"), Format::Jpeg);
    assert_eq!(explicit.format(), Some(Format::Png));
    assert!(!explicit.format_negotiated());
    let key = Transform::parse([
        ("w", "1"),
        ("h", "2"),
        ("r", "crop"),
        ("g", "sw"),
        ("f", "jpeg"),
    ])
    .unwrap()
    .variant_key();
    assert!(
        key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{key}"
    );
}

#[test]
fn negotiation_follows_the_accept_header() {
    let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    assert_eq!(negotiate(Some(chrome), Format::Jpeg), Format::Webp);
    assert_eq!(negotiate(Some(chrome), Format::Png), Format::Webp);
    assert_eq!(negotiate(Some("IMAGE/WEBP"), Format::Png), Format::Webp);
    assert_eq!(
        negotiate(Some("image/webp;q=0, image/*"), Format::Png),
        Format::Png
    );
    assert_eq!(
        negotiate(Some("image/avif,*/*"), Format::Jpeg),
        Format::Jpeg
    );
    assert_eq!(negotiate(Some("*/*"), Format::Png), Format::Png);
    assert_eq!(negotiate(None, Format::Jpeg), Format::Jpeg);
    assert_eq!(negotiate(None, Format::Webp), Format::Jpeg);
}
