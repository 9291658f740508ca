use media::{MAX_FOLDER_DEPTH, NameError, safe_filename, safe_folder_path};

#[test]
fn directory_parts_are_stripped() {
    assert_eq!(safe_filename("photos/2024/cat.jpg").unwrap(), "cat.jpg");
    assert_eq!(safe_filename("C:\\Users\\ada\\cat.jpg").unwrap(), "cat.jpg");
    assert_eq!(
        safe_filename("  my photo (1).jpeg ").unwrap(),
        "my photo (1).jpeg"
    );
    assert_eq!(
        safe_filename("report.final.v2.pdf").unwrap(),
        "report.final.v2.pdf"
    );
    // A name that is only a dangerous word, with a safe extension, is fine.
    assert_eq!(safe_filename("php.jpg").unwrap(), "php.jpg");
}

#[test]
fn dangerous_extensions_are_refused_anywhere_in_the_name() {
    for name in [
        "shell.php",
        "shell.php.jpg",
        "SHELL.PhP.JPG",
        "x.phtml",
        "x.php5.png",
        "archive.phar",
        "run.exe",
        "install.sh",
        "a.bat",
        "a.cmd",
        "page.html",
        "page.htm",
        "logo.svg",
        "app.jsp",
        "default.aspx",
        "legacy.asp",
        "script.cgi",
        "tool.pl",
        "tool.py",
        "lib.dll",
        "lib.so",
        "x.com",
        "screen.scr",
        "setup.msi",
        "run.ps1",
        "macro.vbs",
        "app.jar",
        "code.js",
        ".htaccess",
        // Windows drops trailing dots and spaces; NTFS streams; NUL tricks
        "shell.php.",
        "shell.php. . ",
        "shell.php::$DATA",
        "shell.php%00.jpg",
        "shell.php .jpg",
    ] {
        assert!(
            matches!(safe_filename(name), Err(NameError::Dangerous(_))),
            "{name:?} should be refused as dangerous, got {:?}",
            safe_filename(name)
        );
    }
    assert_eq!(
        safe_filename("shell.php.jpg"),
        Err(NameError::Dangerous("php".into()))
    );
}

#[test]
fn traversal_is_refused() {
    for name in [
        "../etc/passwd",
        "a/../../b.jpg",
        "..\\..\\win.ini",
        "..",
        ".",
        "a/./b.jpg",
    ] {
        assert_eq!(safe_filename(name), Err(NameError::Traversal), "{name:?}");
    }
}

#[test]
fn control_characters_and_direction_overrides_are_refused() {
    for name in [
        "a\nb.jpg",
        "a\0.jpg",
        "tab\t.png",
        "del\u{7f}.png",
        "c1\u{85}.png",
        "photo\u{202E}gpj.exe",
    ] {
        assert_eq!(
            safe_filename(name),
            Err(NameError::ControlCharacter),
            "{name:?}"
        );
    }
}

#[test]
fn empty_and_overlong_names_are_refused() {
    for name in ["", "   ", "photos/", "...", "dir\\"] {
        assert_eq!(safe_filename(name), Err(NameError::Empty), "{name:?}");
    }
    let long = format!("{}.jpg", "a".repeat(300));
    assert_eq!(safe_filename(&long), Err(NameError::TooLong));
}

#[test]
fn folder_paths_are_validated_segment_by_segment() {
    assert_eq!(
        safe_folder_path("photos/2024/june").unwrap(),
        "photos/2024/june"
    );
    assert_eq!(safe_folder_path("/photos/2024/").unwrap(), "photos/2024");
    assert_eq!(safe_folder_path("photos\\2024").unwrap(), "photos/2024");
    assert_eq!(safe_folder_path("a//b"), Err(NameError::EmptySegment));
    assert_eq!(safe_folder_path("a/ /b"), Err(NameError::EmptySegment));
    assert_eq!(safe_folder_path("a/../b"), Err(NameError::Traversal));
    assert_eq!(safe_folder_path("../b"), Err(NameError::Traversal));
    assert_eq!(safe_folder_path("a\\..\\b"), Err(NameError::Traversal));
    assert_eq!(safe_folder_path("a/./b"), Err(NameError::Traversal));
    assert_eq!(safe_folder_path("a/\tb"), Err(NameError::ControlCharacter));
    assert_eq!(safe_folder_path(""), Err(NameError::Empty));
    assert_eq!(safe_folder_path("/"), Err(NameError::Empty));
    assert_eq!(safe_folder_path(&"x".repeat(256)), Err(NameError::TooLong));

    let deepest = vec!["d"; MAX_FOLDER_DEPTH].join("/");
    assert_eq!(safe_folder_path(&deepest).unwrap(), deepest);
    let too_deep = vec!["d"; MAX_FOLDER_DEPTH + 1].join("/");
    assert_eq!(safe_folder_path(&too_deep), Err(NameError::TooDeep));
}
