//! The event names a subscription may ask for: one catalog, in SpaceOS's
//! dotted form, for both route families.

/// Every event name, with what it means. Payloads are documented with the
/// event catalog (`proto-docs/events.md`); events-service passes an event's
/// `data` through unchanged.
pub const EVENTS: &[(&str, &str)] = &[
    ("booking.created", "a booking was made"),
    ("booking.confirmed", "a booking was confirmed"),
    ("booking.updated", "a booking was rescheduled or changed"),
    (
        "booking.cancelled",
        "a booking was cancelled (with its reason; `no_show` when released)",
    ),
    ("booking.start", "a confirmed booking starts in 15 minutes"),
    ("booking.end", "a booking ended and is completed"),
    ("organization.updated", "an organization changed"),
    (
        "space.availability_changed",
        "a meeting space's availability changed",
    ),
    ("member.added", "someone joined the workspace"),
    ("member.removed", "someone left the workspace"),
    ("space.updated", "a content space changed"),
    ("file.uploaded", "a file was stored in a content space"),
    (
        "ping",
        "a test event, sent to one subscription by `POST /api/v1/webhooks/{id}/test`",
    ),
];

/// The name of the test event.
pub const PING: &str = "ping";

/// Whether `name` is in the catalog.
pub fn is_known(name: &str) -> bool {
    EVENTS.iter().any(|(known, _)| *known == name)
}

/// The catalog's names, for messages and the OpenAPI document.
pub fn names() -> Vec<&'static str> {
    EVENTS.iter().map(|(name, _)| *name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_dotted() {
        let mut names = names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EVENTS.len());
        for name in names {
            assert!(
                name == PING
                    || name.split('.').count() == 2
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{name}"
            );
        }
        assert!(is_known("booking.created"));
        assert!(!is_known("booking.exploded"));
    }
}
