//! Names that become storage paths, checked before anything is stored
//! (`media`'s rules): a file name keeps its last segment only and may not
//! climb out of its folder (400), carry control characters (400) or an
//! extension a server or a browser would execute, anywhere in it
//! (`shell.php.jpg`: 422 `Security validation failed.`); a folder path may
//! not climb out of the space (400).

use service_kit::{ApiError, FieldError};

/// Tuzzle's answer to a dangerous name or content.
pub(crate) fn security_failed() -> ApiError {
    ApiError::validation(vec![FieldError::new("file", "Security validation failed.")])
}

/// Tuzzle's answer to a format the config does not accept, or content that
/// is not what its name says.
pub(crate) fn type_not_allowed() -> ApiError {
    ApiError::validation(vec![FieldError::new("file", "File type not allowed.")])
}

/// Tuzzle's answer to a file over its size limit (413).
pub(crate) fn too_large() -> ApiError {
    ApiError::new(service_kit::ErrorCode::PayloadTooLarge, "File too large.")
}

/// An uploaded file's name made safe to store, or the refusal.
pub(crate) fn file_name(raw: &str) -> Result<String, ApiError> {
    media::safe_filename(raw).map_err(|e| match e {
        media::NameError::Traversal => {
            ApiError::bad_request("The file name must not contain path traversal (. or ..).")
        }
        media::NameError::ControlCharacter => {
            ApiError::bad_request("The file name must not contain control characters.")
        }
        media::NameError::Dangerous(_) => security_failed(),
        other => ApiError::validation(vec![FieldError::new(
            "file",
            format!("name is invalid: {other}"),
        )]),
    })
}

/// A folder path (`photos/vacation`, with or without slashes around it) as
/// stored: `photos/vacation/`. Traversal and control characters answer 400.
pub(crate) fn folder_path(raw: &str, field: &str) -> Result<String, ApiError> {
    match media::safe_folder_path(raw) {
        Ok(path) => Ok(format!("{path}/")),
        Err(media::NameError::Traversal) => Err(ApiError::bad_request(format!(
            "The {} must not contain path traversal (. or ..).",
            field.replace('_', " ")
        ))),
        Err(media::NameError::ControlCharacter) => Err(ApiError::bad_request(format!(
            "The {} must not contain control characters.",
            field.replace('_', " ")
        ))),
        Err(other) => Err(ApiError::validation(vec![FieldError::new(
            field,
            format!("is invalid: {other}"),
        )])),
    }
}

/// `type/subtype`: lowercase letters, digits and `+-.`, at most 100 bytes.
pub(crate) fn is_mime(text: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
            })
    };
    text.len() <= 100
        && text
            .split_once('/')
            .is_some_and(|(t, s)| part(t) && part(s))
}

/// The last extension of `name`, lowercase (`Photo.JPG` → `jpg`).
pub(crate) fn extension_of(name: &str) -> Option<String> {
    name.rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .filter(|ext| !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(file_name("photo.jpg").unwrap(), "photo.jpg");
        assert_eq!(
            file_name("../../etc/passwd").unwrap_err().status.as_u16(),
            400
        );
        assert_eq!(file_name("a\u{0}b.jpg").unwrap_err().status.as_u16(), 400);
        let dangerous = file_name("shell.php.jpg").unwrap_err();
        assert_eq!(dangerous.status.as_u16(), 422);
        assert_eq!(dangerous.errors[0].message, "Security validation failed.");
        assert_eq!(
            folder_path("/photos/vacation/", "folder_path").unwrap(),
            "photos/vacation/"
        );
        assert_eq!(
            folder_path("photos/../../x", "folder_path")
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
        assert!(is_mime("image/svg+xml") && !is_mime("image") && !is_mime("Image/PNG"));
        assert_eq!(extension_of("a.tar.GZ").as_deref(), Some("gz"));
        assert_eq!(extension_of("README"), None);
    }
}
