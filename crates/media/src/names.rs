//! File and folder names that may become storage paths and CDN URLs.

/// The longest file name or folder segment, in bytes (as most filesystems).
pub const MAX_NAME_BYTES: usize = 255;
/// The deepest folder path [`safe_folder_path`] accepts.
pub const MAX_FOLDER_DEPTH: usize = 32;
/// The longest folder path, in bytes.
const MAX_PATH_BYTES: usize = 1024;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    /// A `..` or `.` path segment.
    #[error("the name climbs out of its folder")]
    Traversal,
    /// A control character (C0, DEL, C1), or a bidirectional override that
    /// makes `photo\u{202E}gpj.exe` display as `photoexe.jpg`.
    #[error("the name contains a control character")]
    ControlCharacter,
    /// An extension that a server or a browser may execute, anywhere in the
    /// name (`shell.php.jpg` too). Tuzzle answers "Security validation failed.".
    #[error("the extension .{0} is not allowed")]
    Dangerous(String),
    /// An empty segment inside a folder path (`a//b`).
    #[error("the folder path has an empty segment")]
    EmptySegment,
    #[error("the folder path is deeper than {MAX_FOLDER_DEPTH} folders")]
    TooDeep,
}

/// Extensions refused anywhere in a file name: server-side scripts,
/// executables and installers, and active content a browser would run from
/// the CDN's origin (HTML, SVG, XHTML).
const DANGEROUS: &[&str] = &[
    // server-side scripts and their handler-mapped variants
    "php",
    "php3",
    "php4",
    "php5",
    "php7",
    "php8",
    "phps",
    "pht",
    "phtm",
    "phtml",
    "phar",
    "jsp",
    "jspx",
    "jsw",
    "jsv",
    "jspf",
    "asp",
    "aspx",
    "asa",
    "asax",
    "ascx",
    "ashx",
    "asmx",
    "axd",
    "cer",
    "cfm",
    "cfml",
    "cgi",
    "fcgi",
    "pl",
    "pm",
    "py",
    "pyc",
    "pyo",
    "pyw",
    "rb",
    "erb",
    "lua",
    "shtml",
    "shtm",
    "stm",
    "htaccess",
    "htpasswd",
    // shells and executables
    "sh",
    "bash",
    "zsh",
    "csh",
    "ksh",
    "command",
    "bat",
    "cmd",
    "com",
    "exe",
    "dll",
    "so",
    "dylib",
    "scr",
    "msi",
    "msp",
    "mst",
    "cpl",
    "pif",
    "gadget",
    "msc",
    "ps1",
    "ps1xml",
    "ps2",
    "psm1",
    "psd1",
    "vb",
    "vbs",
    "vbe",
    "ws",
    "wsf",
    "wsh",
    "wsc",
    "hta",
    "js",
    "mjs",
    "cjs",
    "jse",
    "jar",
    "war",
    "ear",
    "class",
    "apk",
    "deb",
    "rpm",
    "reg",
    "lnk",
    "inf",
    "scf",
    "application",
    "appref-ms",
    // active content served from the CDN's origin
    "html",
    "htm",
    "xhtml",
    "xht",
    "svg",
    "svgz",
    "swf",
    "xsl",
    "xslt",
];

/// Makes an uploaded file name safe to store and serve: keeps only its last
/// path segment, trims surrounding spaces and trailing dots (which Windows
/// drops, turning `shell.php.` into `shell.php`), and refuses `..`, control
/// characters, empty or over-long names and [dangerous extensions](NameError::Dangerous)
/// anywhere in the name.
///
/// ```
/// assert_eq!(media::safe_filename("C:\\photos\\cat.jpg").unwrap(), "cat.jpg");
/// assert!(media::safe_filename("shell.php.jpg").is_err());
/// assert!(media::safe_filename("../../etc/passwd").is_err());
/// ```
pub fn safe_filename(name: &str) -> Result<String, NameError> {
    refuse_control(name)?;
    let segments: Vec<&str> = name.split(['/', '\\']).collect();
    if segments.iter().any(|s| is_dot_segment(s)) {
        return Err(NameError::Traversal);
    }
    let last = segments.last().copied().unwrap_or_default();
    let name = last.trim().trim_end_matches(['.', ' ']);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    // Every dot-separated part after the first is an extension to someone:
    // Apache runs `shell.php.jpg` as PHP. Only the leading run of letters and
    // digits counts, so that `php `, `php::$DATA` and `php%00` are caught.
    for part in name.split('.').skip(1) {
        let stem: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if DANGEROUS.contains(&stem.as_str()) {
            return Err(NameError::Dangerous(stem));
        }
    }
    Ok(name.to_owned())
}

/// Validates a folder path such as `photos/2024/june` (a leading or trailing
/// `/` is allowed) and returns it normalised without them. Each segment must
/// be non-empty, not `.` or `..`, free of control characters and at most
/// [`MAX_NAME_BYTES`]; at most [`MAX_FOLDER_DEPTH`] segments. A backslash
/// separates segments too, so that `a\..\b` is refused like `a/../b`.
pub fn safe_folder_path(path: &str) -> Result<String, NameError> {
    refuse_control(path)?;
    let trimmed = path.trim().trim_matches(['/', '\\']);
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.len() > MAX_PATH_BYTES {
        return Err(NameError::TooLong);
    }
    let mut segments = Vec::new();
    for segment in trimmed.split(['/', '\\']) {
        if is_dot_segment(segment) {
            return Err(NameError::Traversal);
        }
        let segment = segment.trim();
        if segment.is_empty() {
            return Err(NameError::EmptySegment);
        }
        if segment.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong);
        }
        segments.push(segment);
    }
    if segments.len() > MAX_FOLDER_DEPTH {
        return Err(NameError::TooDeep);
    }
    Ok(segments.join("/"))
}

fn is_dot_segment(segment: &str) -> bool {
    matches!(segment.trim(), "." | "..")
}

fn refuse_control(text: &str) -> Result<(), NameError> {
    let bidi = |c: char| matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if text.chars().any(|c| c.is_control() || bidi(c)) {
        return Err(NameError::ControlCharacter);
    }
    Ok(())
}
